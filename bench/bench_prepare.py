"""Benchmark: the real FEMTO Learning_set from raw CSV to features + spectra.

Unpacks the six ``Learning_set_Bearing*.tar.xz`` archives from ``../shared/datasets/femto``
into ``bench/out/femto`` (kept between runs), then measures, each in a fresh subprocess so
wall time and peak RSS are honest:

* baseline: one ``pandas.read_csv`` per file and one ``scipy.signal.stft`` per snapshot and axis
  (the straightforward way, spectra only);
* ``prepare_dataset``: reading, labels, 54 features and (129, 21, 2) spectra of every snapshot,
  written to ``bench/out/prepared``;
* cached reload: ``load_bearings`` on that output (memory-mapped), and the same plus reading
  every spectrum byte.

Columns: ``op s`` the measured call, ``process s`` the whole child process (interpreter start,
imports, the call), ``cpu s`` its user + system CPU time (a load-independent cross-check when
the machine is shared), ``peak RSS`` the child's maximum resident set.

Target (issue #2): whole Learning_set in <= 5 s, >= 3x the baseline, peak RSS < 2 GB, cached
reload < 1 s. Run: ``.venv/bin/python bench/bench_prepare.py`` (``--skip-baseline`` to save
the ~16 s baseline).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets" / "femto"
OUT = REPO / "bench" / "out"
RAW = OUT / "femto"
PREPARED = OUT / "prepared"
TARGET_SECONDS = 5.0
TARGET_SPEEDUP = 3.0
TARGET_RSS_MB = 2048.0
TARGET_RELOAD_SECONDS = 1.0


def archives() -> list[Path]:
    found = sorted(SHARED.glob("Learning_set_Bearing*.tar.xz"))
    if not found:
        sys.exit(
            f"error: no Learning_set_Bearing*.tar.xz in {SHARED}; this benchmark needs the shared "
            "FEMTO archives beside the repository (../shared/datasets/femto)"
        )
    return found


def unpack() -> Path:
    """Extract the archives once; a stamp of their sizes and mtimes decides re-extraction."""
    found = archives()
    want = {a.name: [a.stat().st_size, a.stat().st_mtime_ns] for a in found}
    stamp = RAW / ".unpacked.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == want:
        return RAW
    shutil.rmtree(RAW, ignore_errors=True)
    RAW.mkdir(parents=True)
    for archive in found:
        print(f"unpacking {archive.name} ...", flush=True)
        with tarfile.open(archive, "r:xz") as tar:
            tar.extractall(RAW, filter="data")
    stamp.write_text(json.dumps(want))
    return RAW


def acc_files(root: Path) -> list[Path]:
    return sorted(root.glob("*/Bearing*/acc_*.csv"))


# --------------------------------------------------------------------------- children


def run_baseline(root: Path) -> dict[str, float]:
    import numpy as np
    import pandas as pd
    import scipy.signal

    start = time.perf_counter()
    files = acc_files(root)
    total = 0.0
    for path in files:
        frame = pd.read_csv(path, header=None)
        for column in (4, 5):
            _, _, z = scipy.signal.stft(frame[column].to_numpy(), nperseg=256, noverlap=128, window="hann")
            total += float(np.abs(z)[0, 0])
    return {"seconds": time.perf_counter() - start, "snapshots": len(files)}


def run_prepare(root: Path) -> dict[str, float]:
    import numpy as np

    from kosmos_fl.data.bearing.processed import prepare_dataset

    shutil.rmtree(PREPARED, ignore_errors=True)
    start = time.perf_counter()
    bearings = prepare_dataset(root, PREPARED, progress=False)
    seconds = time.perf_counter() - start
    n = sum(b.n_snapshots for b in bearings.values())
    finite = all(np.isfinite(b.features).all() for b in bearings.values())
    return {"seconds": seconds, "snapshots": n, "bearings": len(bearings), "finite": float(finite)}


def run_reload(touch: bool) -> dict[str, float]:
    import numpy as np

    from kosmos_fl.data.bearing.processed import load_bearings

    start = time.perf_counter()
    bearings = load_bearings(PREPARED)
    checksum = 0.0
    if touch:  # read every byte of the memory-mapped spectra
        checksum = sum(float(np.asarray(b.spectra).sum(dtype=np.float64)) for b in bearings.values())
    return {
        "seconds": time.perf_counter() - start,
        "snapshots": sum(b.n_snapshots for b in bearings.values()),
        "checksum": checksum,
    }


def child(kind: str) -> None:
    process_start = time.perf_counter()
    if kind == "baseline":
        result = run_baseline(RAW)
    elif kind == "prepare":
        result = run_prepare(RAW)
    else:
        result = run_reload(kind == "reload-touch")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["maxrss_mb"] = usage.ru_maxrss / 1024
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    result["in_process_seconds"] = time.perf_counter() - process_start
    print(json.dumps(result))


def measure(kind: str) -> dict[str, float]:
    """Run one measurement in a fresh interpreter; add its wall time including start-up."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"error: {kind} run failed:\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_seconds"] = wall
    return result


# --------------------------------------------------------------------------- report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--skip-baseline", action="store_true", help="do not run the baseline")
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return

    root = unpack()
    files = acc_files(root)
    megabytes = sum(p.stat().st_size for p in files) / 1e6
    print(
        f"input: {len(files)} snapshots in {len(list(root.glob('*/Bearing*')))} bearings, "
        f"{megabytes:.0f} MB of CSV (page cache warm)\n"
    )

    rows: list[tuple[str, dict[str, float]]] = []
    baseline = None if args.skip_baseline else measure("baseline")
    if baseline:
        rows.append(("baseline: pandas.read_csv + scipy stft", baseline))
    prepared = measure("prepare")
    rows.append(("prepare_dataset (features + spectra)", prepared))
    reload = measure("reload")
    rows.append(("cached reload (load_bearings, mmap)", reload))
    touched = measure("reload-touch")
    rows.append(("cached reload + read all spectra", touched))

    header = (
        f"{'step':40} {'op s':>7} {'process s':>9} {'cpu s':>7} {'snap/s':>8} {'MB/s':>7} {'peak RSS MB':>11}"
    )
    print(header)
    print("-" * len(header))
    for label, r in rows:
        rate = r["snapshots"] / r["seconds"]
        mbps = megabytes / r["seconds"] if "reload" not in label else float("nan")
        print(
            f"{label:40} {r['seconds']:7.2f} {r['process_seconds']:9.2f} {r['cpu_seconds']:7.2f} "
            f"{rate:8.0f} {mbps:7.0f} {r['maxrss_mb']:11.0f}"
        )
    print()
    checks = [
        (f"prepare <= {TARGET_SECONDS:.0f} s (whole process)", prepared["process_seconds"] <= TARGET_SECONDS),
        (f"peak RSS < {TARGET_RSS_MB:.0f} MB", prepared["maxrss_mb"] < TARGET_RSS_MB),
        (f"cached reload < {TARGET_RELOAD_SECONDS:.0f} s", reload["seconds"] < TARGET_RELOAD_SECONDS),
        ("features finite", prepared.get("finite", 0.0) == 1.0),
    ]
    if baseline:
        speedup = baseline["process_seconds"] / prepared["process_seconds"]
        print(
            f"speed-up vs baseline (whole processes): {speedup:.1f}x "
            f"(operations only: {baseline['seconds'] / prepared['seconds']:.1f}x)"
        )
        checks.append((f">= {TARGET_SPEEDUP:.0f}x baseline", speedup >= TARGET_SPEEDUP))
    for label, ok in checks:
        print(f"  [{'ok' if ok else 'MISSED'}] {label}")
    sys.exit(0 if all(ok for _, ok in checks) else 1)


if __name__ == "__main__":
    main()
