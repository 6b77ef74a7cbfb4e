"""``kosmos-fl data``: prepare, generate and inspect bearing data.

Commands raise :class:`~kosmos_fl.errors.DataError` for user mistakes; the main CLI prints them
as one ``error: ...`` line.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from kosmos_fl.errors import DataError

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Prepare, generate and inspect bearing data.",
)

console = Console()


def parse_snapshots(text: str) -> tuple[int, int]:
    """``"60:150"`` -> (60, 150); ``"100"`` -> (100, 100)."""
    parts = text.replace("-", ":").split(":")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or not 2 <= values[0] <= values[1]:
        raise DataError(f"--snapshots {text!r} is invalid; use MIN:MAX (e.g. 60:150) with 2 <= MIN <= MAX")
    return values[0], values[1]


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f}"


def _condition(condition: int) -> str:
    from kosmos_fl.data.bearing.femto import CONDITIONS

    rpm, load = CONDITIONS[condition]
    return f"{condition} ({rpm} rpm, {load} N)"


@app.command()
def prepare(
    raw_dir: Path = typer.Argument(..., help="Folder with FEMTO bearing folders (or 2021 layout)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for the processed bearings."),
    workers: int | None = typer.Option(None, "--workers", help="Bearings processed at once."),
    skip_bad: bool = typer.Option(
        False, "--skip-bad", help="Skip corrupt or short snapshot files instead of stopping."
    ),
) -> None:
    """Read raw recordings once and store labels, features and spectra in OUT."""
    from kosmos_fl.data.bearing.processed import prepare_dataset

    start = time.perf_counter()
    bearings = prepare_dataset(
        raw_dir, out, progress=True, workers=workers, on_error="skip" if skip_bad else "raise"
    )
    elapsed = time.perf_counter() - start
    table = Table(title=f"prepared {len(bearings)} bearings into {out}")
    for column in ("bearing", "condition", "snapshots", "life (h)", "skipped files"):
        table.add_column(column, justify="left" if column in ("bearing", "condition") else "right")
    for b in bearings.values():
        table.add_row(
            b.name, _condition(b.condition), str(b.n_snapshots), _hours(b.life_seconds), str(len(b.skipped))
        )
    console.print(table)
    total = sum(b.n_snapshots for b in bearings.values())
    console.print(f"{total} snapshots in {elapsed:.1f} s")


@app.command()
def generate(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write BearingC_I folders into."),
    bearings: int = typer.Option(17, "--bearings", "-n", help="How many of the 17 PHM 2012 bearings."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same files."),
    snapshots: str = typer.Option("60:150", "--snapshots", help="Snapshots per bearing, MIN:MAX."),
) -> None:
    """Write synthetic run-to-failure bearings in the raw PRONOSTIA format."""
    from kosmos_fl.data.bearing.generate import bearing_spec, generate_dataset

    span = parse_snapshots(snapshots)
    start = time.perf_counter()
    folders = generate_dataset(out, bearings=bearings, seed=seed, snapshots=span)
    table = Table(title=f"generated {len(folders)} bearings in {out} (seed {seed})")
    for column in ("bearing", "condition", "snapshots", "life (h)", "fault", "onset"):
        table.add_column(column)
    for folder in folders:
        spec = bearing_spec(folder.name, seed=seed, snapshots=span)
        table.add_row(
            spec.name,
            _condition(spec.condition),
            str(spec.n_snapshots),
            _hours(spec.life_seconds),
            spec.fault,
            f"{spec.onset:.0%}",
        )
    console.print(table)
    console.print(f"done in {time.perf_counter() - start:.1f} s")


@app.command()
def info(data_dir: Path = typer.Argument(..., help="Raw, prepared or 2021-layout data folder.")) -> None:
    """Show the bearings in DATA_DIR: snapshots, life and operating condition."""
    from kosmos_fl.data.bearing.cache import read_meta
    from kosmos_fl.data.bearing.femto import find_bearings, list_acc_files, read_timestamps
    from kosmos_fl.data.bearing.layout import (
        LEGACY_FILES,
        MANIFEST,
        detect_layout,
        legacy_bearings,
        read_csv_matrix,
    )

    layout = detect_layout(data_dir)
    rows: list[tuple[str, int, int, float, str]] = []
    if layout == "prepared":
        import json

        from kosmos_fl.data.bearing.femto import bearing_condition

        names = json.loads((data_dir / MANIFEST).read_text()).get("bearings", [])
        for name in names:
            meta = read_meta(data_dir / name)
            if meta is None:
                raise DataError(f"{data_dir / name} is missing or damaged; re-run `kosmos-fl data prepare`")
            rows.append(
                (
                    name,
                    bearing_condition(name),
                    int(meta["n_snapshots"]),
                    float(meta["life_seconds"]),
                    f"{len(meta.get('skipped', []))} skipped",
                )
            )
    elif layout == "2021":
        from kosmos_fl.data.bearing.femto import bearing_condition

        for name, folder in legacy_bearings(data_dir).items():
            path = next((folder / f for f in LEGACY_FILES["features"] if (folder / f).is_file()), None)
            if path is None:
                raise DataError(f"{folder} has no features.csv.gz")
            cols, values = read_csv_matrix(path)
            lower = [c.strip().lower() for c in cols]
            rul = values[:, lower.index("rul")] if "rul" in lower else None
            life = float(rul[0]) if rul is not None and rul.size else float("nan")
            rows.append((name, bearing_condition(name), values.shape[0], life, path.name))
    else:
        from kosmos_fl.data.bearing.femto import bearing_condition

        found = find_bearings(data_dir)
        if not found:
            raise DataError(
                f"no bearing data in {data_dir}: expected BearingC_I folders with acc_*.csv; "
                "try `kosmos-fl data generate --out DIR`"
            )
        for name, folder in found.items():
            files = list_acc_files(folder)
            t = read_timestamps(folder)
            rows.append(
                (
                    name,
                    bearing_condition(name),
                    len(files),
                    float(t[-1] - t[0]),
                    str(folder.relative_to(data_dir)) if folder != data_dir else ".",
                )
            )

    table = Table(title=str(data_dir))
    for column in ("bearing", "condition", "snapshots", "life (h)", "source"):
        table.add_column(column)
    for name, condition, n, life, note in rows:
        table.add_row(name, _condition(condition), str(n), _hours(life), note)
    console.print(table)
    console.print(f"{len(rows)} bearings, {sum(r[2] for r in rows)} snapshots ({layout} layout)")


def _mount_postgres() -> None:
    """``kosmos-fl data import-postgres``: the command lives with the PostgreSQL code."""
    from kosmos_fl.data.turbofan.postgres import import_postgres

    app.command("import-postgres", help="Load a NASA C-MAPSS file into a PostgreSQL table.")(import_postgres)


_mount_postgres()
