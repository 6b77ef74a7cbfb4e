"""Seeded synthetic run-to-failure bearings written in the raw PRONOSTIA format.

The demo and most tests cannot rely on the real archives (no internet on users' machines or
CI), so this module writes ``BearingC_I/acc_NNNNN.csv`` folders that the real reader accepts
unchanged: 2560 rows at 25.6 kHz every 10 s, six columns (hour, minute, second, microsecond in
the real files' ``1.1879e+05`` style, horizontal and vertical acceleration in g with three
decimals), plus ``temp_*.csv`` files the reader must ignore.

Signal model per snapshot and axis (see docs/DATA.md):

* shaft imbalance at the rotation frequency and its 2nd harmonic;
* broadband sensor / machine noise;
* a localised defect: impacts at the bearing's defect frequency (BPFO, BPFI or 2xBSF of the
  PRONOSTIA bearing at the condition's speed), each ringing a structural resonance of a few kHz,
  with per-impact amplitude jitter; inner-race and ball defects are amplitude modulated by the
  shaft / cage rotation.

A bearing is healthy until a random onset (30-70 % of its life); then a health index rises
exponentially to 1 at failure and scales the defect amplitude, the noise level and the shaft
components. Every bearing draws its own life, onset, fault type, resonance and gains from a
generator seeded by ``(seed, name)``, so the first N bearings are identical whatever N.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from kosmos_fl.data.bearing.femto import (
    CONDITIONS,
    SAMPLE_RATE,
    SNAPSHOT_LEN,
    SNAPSHOT_PERIOD,
    bearing_condition,
)
from kosmos_fl.errors import DataError

BEARING_ORDER: tuple[str, ...] = (
    "Bearing1_1",
    "Bearing2_1",
    "Bearing3_1",
    "Bearing1_2",
    "Bearing2_2",
    "Bearing3_2",
    "Bearing1_3",
    "Bearing2_3",
    "Bearing3_3",
    "Bearing1_4",
    "Bearing2_4",
    "Bearing1_5",
    "Bearing2_5",
    "Bearing1_6",
    "Bearing2_6",
    "Bearing1_7",
    "Bearing2_7",
)
"""The 17 PHM 2012 bearings, conditions interleaved: the first 3 cover every operating
condition and the first 6 are the challenge's Learning_set."""

# PRONOSTIA test bearing (NSK 6804DD): 13 balls of 3.5 mm on a 25.6 mm pitch, 0° contact angle.
N_BALLS = 13
BALL_DIAMETER_MM = 3.5
PITCH_DIAMETER_MM = 25.6
FAULTS = ("outer", "inner", "ball")
TEMP_ROWS = 600
"""Rows of one temperature file (10 Hz for a minute), as in the real recordings."""


def defect_frequencies(rpm: float) -> dict[str, float]:
    """Shaft (fr), cage (ftf), ball spin (bsf) and race pass frequencies (bpfo, bpfi) in Hz."""
    fr = rpm / 60.0
    ratio = BALL_DIAMETER_MM / PITCH_DIAMETER_MM
    return {
        "fr": fr,
        "ftf": fr / 2.0 * (1.0 - ratio),
        "bsf": fr * PITCH_DIAMETER_MM / (2.0 * BALL_DIAMETER_MM) * (1.0 - ratio**2),
        "bpfo": N_BALLS / 2.0 * fr * (1.0 - ratio),
        "bpfi": N_BALLS / 2.0 * fr * (1.0 + ratio),
    }


@dataclass(frozen=True)
class BearingSpec:
    """The random draws that define one synthetic bearing."""

    name: str
    seed: int
    condition: int
    n_snapshots: int
    start_time: float  # seconds after midnight of the first snapshot
    onset: float  # share of life after which the defect grows
    growth: float  # exponential rate of the health index after onset
    fault: str
    resonance_hz: float
    decay_s: float
    defect_peak_g: float  # defect impact amplitude at failure
    noise_g: tuple[float, float]  # healthy broadband noise per axis
    noise_growth: float  # noise multiplier at failure minus 1
    axis_gain: tuple[float, float]  # defect gain per axis
    shaft_g: float
    bias_g: tuple[float, float]

    @property
    def life_seconds(self) -> float:
        return (self.n_snapshots - 1) * SNAPSHOT_PERIOD


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def bearing_spec(name: str, *, seed: int = 0, snapshots: tuple[int, int] = (60, 150)) -> BearingSpec:
    """Draw one bearing's parameters from a generator seeded by ``(seed, name)``."""
    condition = bearing_condition(name)
    low, high = snapshots
    if not 2 <= low <= high:
        raise DataError(f"snapshots range {low}:{high} is invalid; use MIN:MAX with 2 <= MIN <= MAX")
    rng = _rng(seed, name)
    load = CONDITIONS[condition][1] / 4000.0
    return BearingSpec(
        name=name,
        seed=int(seed),
        condition=condition,
        n_snapshots=int(rng.integers(low, high + 1)),
        start_time=float(rng.uniform(0.0, 86400.0)),
        onset=float(rng.uniform(0.3, 0.7)),
        growth=float(rng.uniform(2.5, 5.0)),
        fault=str(rng.choice(FAULTS)),
        resonance_hz=float(rng.uniform(2500.0, 6000.0)),
        decay_s=float(rng.uniform(2e-4, 5e-4)),
        defect_peak_g=float(rng.uniform(8.0, 20.0) * load),
        noise_g=(float(rng.uniform(0.3, 0.45) * load), float(rng.uniform(0.22, 0.35) * load)),
        noise_growth=float(rng.uniform(1.0, 3.0)),
        axis_gain=(float(rng.uniform(0.6, 1.2)), 1.0),
        shaft_g=float(rng.uniform(0.02, 0.06) * load),
        bias_g=(float(rng.normal(0.0, 0.01)), float(rng.normal(0.0, 0.01))),
    )


def health_index(spec: BearingSpec) -> np.ndarray:
    """0 until the onset, then exponential growth to 1 at the last snapshot: (n,)."""
    u = np.linspace(0.0, 1.0, spec.n_snapshots)
    v = np.clip((u - spec.onset) / (1.0 - spec.onset), 0.0, None)
    return np.expm1(spec.growth * v) / np.expm1(spec.growth)


def synthesize(spec: BearingSpec) -> tuple[np.ndarray, np.ndarray]:
    """Time of day of each snapshot (n,) and its signals (n, 2560, 2) in g, vectorised."""
    rng = _rng(spec.seed + 1, spec.name)
    n = spec.n_snapshots
    freqs = defect_frequencies(CONDITIONS[spec.condition][0])
    health = health_index(spec)[:, None]  # (n, 1)
    t = np.arange(SNAPSHOT_LEN) / SAMPLE_RATE  # (L,)
    speed = 1.0 + rng.normal(0.0, 0.003, (n, 1))  # slip / speed jitter per snapshot
    fr = freqs["fr"] * speed
    shaft_phase = rng.uniform(0.0, 2 * np.pi, (n, 1)) + 2 * np.pi * fr * t
    shaft = spec.shaft_g * (1.0 + 2.0 * health) * (np.sin(shaft_phase) + 0.4 * np.sin(2 * shaft_phase + 1.0))

    if spec.fault == "outer":
        f_defect, modulation = freqs["bpfo"] * speed, 1.0
    elif spec.fault == "inner":
        f_defect, modulation = freqs["bpfi"] * speed, 0.6 + 0.4 * np.cos(shaft_phase)
    else:
        cage = 2 * np.pi * freqs["ftf"] * speed * t + rng.uniform(0.0, 2 * np.pi, (n, 1))
        f_defect, modulation = 2.0 * freqs["bsf"] * speed, 0.6 + 0.4 * np.cos(cage)
    cycles = t * f_defect + rng.uniform(0.0, 1.0, (n, 1))  # impacts so far
    impact = np.floor(cycles).astype(np.int64)
    since = (cycles - impact) / f_defect  # seconds since the last impact
    jitter = rng.lognormal(0.0, 0.25, (n, int(impact.max()) + 1))
    ring = np.exp(-since / spec.decay_s) * np.sin(2 * np.pi * spec.resonance_hz * since)
    defect = spec.defect_peak_g * health * modulation * np.take_along_axis(jitter, impact, 1) * ring

    signals = np.empty((n, SNAPSHOT_LEN, 2), dtype=np.float64)
    for axis in range(2):
        noise = rng.normal(0.0, 1.0, (n, SNAPSHOT_LEN)) * spec.noise_g[axis]
        noise *= 1.0 + spec.noise_growth * health
        signals[..., axis] = spec.axis_gain[axis] * defect + noise + shaft + spec.bias_g[axis]
    times = spec.start_time + SNAPSHOT_PERIOD * np.arange(n)
    return times, signals


def _micro_text(micro: np.ndarray) -> pa.Array:
    """Microseconds as the real files write them: ``67304`` below 1e5, else ``1.1879e+05``."""
    mantissa = np.minimum(np.round(micro / 1e5, 4), 9.9999)
    exponent = pc.binary_join_element_wise(pc.cast(pa.array(mantissa), pa.string()), "e+05", "")
    return pc.if_else(pa.array(micro >= 100000), exponent, pc.cast(pa.array(micro), pa.string()))


def _time_columns(times: np.ndarray) -> dict[str, pa.Array]:
    """Hour, minute, second and microsecond columns of every row of snapshots at ``times``.

    Snapshots are exactly 10 s apart, so every snapshot shares the same sub-second pattern:
    the microsecond strings are formatted once for one snapshot and repeated.
    """
    offsets = np.arange(SNAPSHOT_LEN) / SAMPLE_RATE
    tod = np.mod(times, 86400.0)
    start = np.floor(tod)
    frac = tod[0] - start[0]
    within = frac + offsets  # seconds after the first snapshot's whole second
    carry = np.floor(within).astype(np.int64)
    micro = np.minimum(np.floor((within - carry) * 1e6), 999999.0).astype(np.int64)
    whole = (start.astype(np.int64)[:, None] + carry[None, :]).ravel() % 86400
    micro_text = pc.take(_micro_text(micro), pa.array(np.tile(np.arange(SNAPSHOT_LEN), len(times))))
    return {
        "hour": pa.array(whole // 3600, pa.int8()),
        "minute": pa.array(whole // 60 % 60, pa.int8()),
        "second": pa.array(whole % 60, pa.int8()),
        "micro": micro_text,
    }


_MAX_MILLI_G = 60_000  # the accelerometers saturate around 50 g


def _acc_text(values: np.ndarray, lookup: pa.Array) -> pa.Array:
    """Accelerations as 3-decimal text (``0.59``, ``-0.263``) via a lookup of every value."""
    milli = np.clip(np.rint(values * 1000.0), -_MAX_MILLI_G, _MAX_MILLI_G).astype(np.int64)
    return pc.take(lookup, pa.array(milli + _MAX_MILLI_G))


@functools.cache
def _acc_lookup() -> pa.Array:
    values = np.arange(-_MAX_MILLI_G, _MAX_MILLI_G + 1) / 1000.0 + 0.0
    return pc.cast(pa.array(values), pa.string())


def _write_split(table: pa.Table, paths: Sequence[Path], rows: int, delimiter: str) -> None:
    """Write ``table`` as headerless CSV files of ``rows`` lines each."""
    options = pacsv.WriteOptions(include_header=False, delimiter=delimiter, quoting_style="none")
    for i, path in enumerate(paths):
        pacsv.write_csv(table.slice(i * rows, rows), str(path), options)


def write_bearing(folder: Path, spec: BearingSpec) -> Path:
    """Write one synthetic bearing as ``acc_*.csv`` (+ ``temp_*.csv``) files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in (*folder.glob("acc_*.csv"), *folder.glob("temp_*.csv")):
        old.unlink()
    times, signals = synthesize(spec)
    n = spec.n_snapshots
    lookup = _acc_lookup()
    flat = signals.reshape(-1, 2)
    table = pa.table(
        {
            **_time_columns(times),
            "horizontal": _acc_text(flat[:, 0], lookup),
            "vertical": _acc_text(flat[:, 1], lookup),
        }
    )
    _write_split(table, [folder / f"acc_{i + 1:05d}.csv" for i in range(n)], SNAPSHOT_LEN, ",")

    # temperature: one 600-row file per minute of recording, ';'-separated like the originals
    n_temp = max(1, int(spec.life_seconds // 60))
    temp_times = spec.start_time + np.arange(n_temp * TEMP_ROWS) / 10.0
    tod = np.floor(np.mod(temp_times, 86400.0) * 10).astype(np.int64)
    health = np.interp(temp_times, times, health_index(spec))
    rng = _rng(spec.seed + 2, spec.name)
    temp = np.round(40.0 + 35.0 * health + rng.normal(0.0, 0.05, temp_times.size), 3)
    temp_table = pa.table(
        {
            "hour": tod // 36000,
            "minute": tod // 600 % 60,
            "second": tod // 10 % 60,
            "tenth": tod % 10,
            "celsius": temp,
        }
    )
    _write_split(temp_table, [folder / f"temp_{i + 1:05d}.csv" for i in range(n_temp)], TEMP_ROWS, ";")
    return folder


def select_bearings(bearings: int | Sequence[str]) -> list[str]:
    """The first N of :data:`BEARING_ORDER`, or explicit names (validated)."""
    if isinstance(bearings, int | np.integer):
        if not 1 <= bearings <= len(BEARING_ORDER):
            raise DataError(f"--bearings must be between 1 and {len(BEARING_ORDER)}, got {bearings}")
        return list(BEARING_ORDER[: int(bearings)])
    names = list(bearings)
    for name in names:
        bearing_condition(name)  # raises a DataError naming a bad name
    if not names:
        raise DataError("no bearings requested; pass a count or names like Bearing1_1")
    return names


def generate_dataset(
    out: Path,
    *,
    bearings: int | Sequence[str] = 17,
    seed: int = 0,
    snapshots: tuple[int, int] = (60, 150),
) -> list[Path]:
    """Write synthetic bearings under ``out`` (``out/BearingC_I/acc_*.csv``); return the folders.

    ``bearings`` is a count (first N of :data:`BEARING_ORDER`) or explicit names; each bearing
    gets between ``snapshots[0]`` and ``snapshots[1]`` snapshots (10 s apart).
    """
    out = Path(out)
    names = select_bearings(bearings)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create output folder {out}: {exc.strerror}") from exc
    folders = []
    for name in names:
        spec = bearing_spec(name, seed=seed, snapshots=snapshots)
        folders.append(write_bearing(out / name, spec))
    return folders
