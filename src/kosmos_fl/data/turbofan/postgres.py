"""C-MAPSS data in PostgreSQL: read a table into the reader's DataFrame shape, import a NASA file.

A site that keeps its engine data in a database points ``data_path`` at a DSN
(``postgresql://user:password@host:5432/db``) and names the table in the use case's ``table``
parameter. The table has the columns of :data:`kosmos_fl.data.turbofan.cmapss.COLUMNS` (``unit, cycle,
setting_1..3, s_1..s_21``) and optionally ``rul`` (true remaining cycles of each row, for units
that were not run to failure). ``kosmos-fl data import-postgres FILE --table T --dsn DSN`` creates
such a table from a NASA file.

Credentials never leave this module in clear: every message shows the DSN through
:func:`redact_dsn`, and driver error texts are scrubbed of the password before they are raised.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import typer

from kosmos_fl.data.turbofan.cmapss import COLUMNS, add_rul, read_cmapss, read_rul_file
from kosmos_fl.errors import DataError, DataFormatError

#: Optional column holding each row's true RUL (imported from ``RUL_FD00x.txt`` for test files).
RUL_COLUMN = "rul"
IfExists = Literal["fail", "replace", "append"]
CONNECT_TIMEOUT_S = 5

_SCHEME = re.compile(
    r"^(?P<scheme>postgres(?:ql)?(?:\+[a-z0-9_]+)?):/+(?P<rest>.*)$", re.IGNORECASE | re.DOTALL
)
_KV_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)", re.IGNORECASE)
_URL_USERINFO = re.compile(r"([a-z][a-z0-9+.-]*:/+)([^/?#\s]*)@", re.IGNORECASE)


# --------------------------------------------------------------------------- DSNs


def is_dsn(value: str | Path) -> bool:
    """True when ``value`` is a PostgreSQL URL, also after ``pathlib`` squeezed its ``//``."""
    return _SCHEME.match(str(value).strip()) is not None


def normalize_dsn(value: str | Path) -> str:
    """The DSN as text with ``scheme://`` restored (``Path("postgresql://h/db")`` turns it into
    ``postgresql:/h/db``), so a DSN survives being passed around as a path."""
    text = str(value).strip()
    m = _SCHEME.match(text)
    if m is None:
        raise DataError(f"{redact_dsn(text)} is not a PostgreSQL DSN; use postgresql://user@host:5432/db")
    if "://" in text:
        return text
    return f"{m['scheme']}://{m['rest']}"


def redact_dsn(text: str | Path) -> str:
    """``text`` with every password masked as ``***``: ``user:secret@host`` in URLs and
    ``password=secret`` in query strings or key=value DSNs. Safe on any string (error texts too)."""

    def _userinfo(m: re.Match[str]) -> str:
        user, sep, _ = m[2].partition(":")
        return f"{m[1]}{user}{':***' if sep else ''}@"

    out = _URL_USERINFO.sub(_userinfo, str(text))
    return _KV_PASSWORD.sub(lambda m: f"{m[1]}***", out)


def _password(dsn: str) -> str | None:
    from sqlalchemy.engine import make_url

    try:
        return make_url(dsn).password  # type: ignore[return-value]
    except Exception:
        return None


def _scrub(text: str, dsn: str) -> str:
    """A driver message on one line, with the DSN's password removed even where it is quoted
    outside of a URL (some drivers echo connection parameters)."""
    line = " ".join(str(text).split())
    pw = _password(dsn)
    if pw and len(pw) >= 3:  # shorter ones would mask ordinary words; URL forms are masked below
        line = line.replace(pw, "***")
    return redact_dsn(line)


def _engine(dsn: str) -> Any:
    """A SQLAlchemy engine on psycopg 3 (plain ``postgresql://`` would pick psycopg2)."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    text = normalize_dsn(dsn)
    try:
        url = make_url(text)
    except Exception:
        raise DataError(
            f"{redact_dsn(text)} is not a valid PostgreSQL DSN; use postgresql://user:password@host:5432/db"
        ) from None
    url = url.set(drivername="postgresql+psycopg")
    return sa.create_engine(
        url,
        poolclass=NullPool,
        hide_parameters=True,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
    )


@contextmanager
def _connect(dsn: str, *, write: bool = False) -> Iterator[Any]:
    """A connection (inside one transaction with ``write``); connection failures become one
    DataError with the DSN redacted."""
    import sqlalchemy.exc as sa_exc

    engine = _engine(dsn)
    try:
        try:
            conn = engine.connect()
        except sa_exc.SQLAlchemyError as exc:
            reason = _scrub(str(getattr(exc, "orig", None) or exc), dsn)
            raise DataError(
                f"cannot connect to PostgreSQL at {redact_dsn(normalize_dsn(dsn))} ({reason[:300]}); "
                f"check host, port, user, password and database name in the DSN"
            ) from None
        with conn:
            if write:
                with conn.begin():
                    yield conn
            else:
                yield conn
    finally:
        engine.dispose()


def _split_table(table: str) -> tuple[str | None, str]:
    name = (table or "").strip()
    schema, dot, rest = name.partition(".")
    if dot:
        schema, name = schema.strip(), rest.strip()
    else:
        schema = None
    if not name or (dot and not schema) or len(name) > 63:
        raise DataError(
            f"table name {table!r} is invalid; use 'name' or 'schema.name' (at most 63 characters)"
        )
    return schema, name


# --------------------------------------------------------------------------- reading


def table_columns(conn: Any, table: str, dsn: str) -> list[str]:
    """Column names of ``table``; a missing table is a DataError that says how to create it."""
    import sqlalchemy as sa

    schema, name = _split_table(table)
    if not sa.inspect(conn).has_table(name, schema=schema):
        raise DataError(
            f"table '{table}' does not exist in the database {redact_dsn(normalize_dsn(dsn))}; fix the "
            f"use case's 'table' parameter or create it with `kosmos-fl data import-postgres FILE "
            f"--table {table} --dsn ...`"
        )
    return [c["name"] for c in sa.inspect(conn).get_columns(name, schema=schema)]


def read_cmapss_table(
    dsn: str | Path,
    table: str,
    *,
    columns: Sequence[str] | None = None,
    units: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Rows of a C-MAPSS table as :func:`~kosmos_fl.data.turbofan.cmapss.read_cmapss` returns them.

    ``columns`` limits what is fetched (``unit`` and ``cycle`` always come; default: all 26
    C-MAPSS columns) and ``units`` filters engines in the database, so a client moves only its own
    rows. A ``rul`` column is returned too when the table has one. Sorted by unit and cycle.
    """
    import sqlalchemy as sa

    dsn = normalize_dsn(dsn)
    wanted = list(dict.fromkeys(["unit", "cycle", *(columns if columns is not None else COLUMNS)]))
    with _connect(dsn) as conn:
        have = table_columns(conn, table, dsn)
        missing = [c for c in wanted if c not in have]
        if missing:
            raise DataError(
                f"table '{table}' lacks the column(s) {', '.join(missing)}; a C-MAPSS table has unit, "
                f"cycle, setting_1..setting_3, s_1..s_21 (create it with `kosmos-fl data import-postgres`)"
            )
        if RUL_COLUMN in have and RUL_COLUMN not in wanted:
            wanted.append(RUL_COLUMN)
        schema, name = _split_table(table)
        tbl = sa.table(name, *(sa.column(c) for c in wanted), schema=schema)
        stmt = sa.select(*(tbl.c[c] for c in wanted)).order_by(tbl.c.unit, tbl.c.cycle)
        if units is not None:
            stmt = stmt.where(tbl.c.unit.in_([int(u) for u in units]))
        try:
            rows = conn.execute(stmt).fetchall()
        except sa.exc.SQLAlchemyError as exc:
            reason = _scrub(str(getattr(exc, "orig", None) or exc), dsn)
            raise DataError(f"cannot read table '{table}' ({reason[:300]})") from None
    return _frame(rows, wanted, table)


def _frame(rows: Sequence[Any], columns: list[str], table: str) -> pd.DataFrame:
    """Typed DataFrame from fetched rows: integer unit/cycle, float64 values; NULLs are errors."""
    try:
        values = np.array(rows, dtype=np.float64).reshape(len(rows), len(columns))
    except (TypeError, ValueError) as exc:
        raise DataFormatError(f"table '{table}' holds non-numeric values ({exc})") from None
    nulls = np.isnan(values).any(axis=0)
    if nulls.any():
        bad = [c for c, n in zip(columns, nulls, strict=True) if n]
        raise DataFormatError(f"table '{table}' has NULL values in column(s) {', '.join(bad)}")
    df = pd.DataFrame(values, columns=columns)
    ids = values[:, :2]
    if np.any(ids != np.round(ids)) or np.any(ids < 1):
        raise DataFormatError(f"table '{table}': unit and cycle must be positive integers")
    df = df.astype({"unit": np.int64, "cycle": np.int64})
    if df.duplicated(["unit", "cycle"]).any():
        raise DataFormatError(f"table '{table}': a unit repeats a cycle number")
    return df


# --------------------------------------------------------------------------- import


def read_cmapss_with_labels(file: Path) -> pd.DataFrame:
    """A NASA file; for ``test_FD00x.txt`` with ``RUL_FD00x.txt`` beside it, plus an uncapped
    ``rul`` column so the table carries the true labels of units that did not run to failure."""
    file = Path(file)
    df = read_cmapss(file)
    if file.name.lower().startswith("test_"):
        rul_file = file.with_name("RUL_" + file.name[len("test_") :])
        if rul_file.is_file():
            df = add_rul(df, cap=None, final_rul=read_rul_file(rul_file))
    return df


def _sa_table(name: str, schema: str | None, columns: Sequence[str]) -> Any:
    import sqlalchemy as sa

    cols = [
        sa.Column("unit", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("cycle", sa.BigInteger, primary_key=True, autoincrement=False),
        *(sa.Column(c, sa.Double) for c in columns if c not in ("unit", "cycle")),
    ]
    return sa.Table(name, sa.MetaData(), *cols, schema=schema)


def _copy_rows(conn: Any, schema: str | None, name: str, df: pd.DataFrame) -> None:
    """Bulk-load ``df`` with PostgreSQL COPY (about 100x faster than row inserts); floats are
    written with ``repr`` precision, so they read back bit-identical."""
    import io

    from psycopg import sql

    buf = io.StringIO()
    df.to_csv(buf, index=False, header=False)
    target = sql.Identifier(schema, name) if schema else sql.Identifier(name)
    stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        target, sql.SQL(", ").join(sql.Identifier(c) for c in df.columns)
    )
    raw = conn.connection.driver_connection
    with raw.cursor() as cur, cur.copy(stmt) as copy:
        copy.write(buf.getvalue())


def import_cmapss(file: Path, table: str, dsn: str | Path, *, if_exists: IfExists = "fail") -> int:
    """Load a NASA C-MAPSS file into ``table`` (primary key unit, cycle); returns the row count.

    ``if_exists``: ``fail`` (default) refuses an existing table, ``replace`` drops and recreates
    it, ``append`` adds rows (a repeated unit/cycle is refused by the primary key). One
    transaction: on any error the database is left as it was.
    """
    import sqlalchemy as sa

    if if_exists not in ("fail", "replace", "append"):
        raise DataError(f"if_exists must be fail, replace or append, not {if_exists!r}")
    dsn = normalize_dsn(dsn)
    df = read_cmapss_with_labels(Path(file))
    schema, name = _split_table(table)
    tbl = _sa_table(name, schema, list(df.columns))
    with _connect(dsn, write=True) as conn:
        exists = sa.inspect(conn).has_table(name, schema=schema)
        if exists and if_exists == "fail":
            raise DataError(
                f"table '{table}' already exists in {redact_dsn(dsn)}; pass --if-exists replace "
                f"(or append) or choose another table name"
            )
        if exists and if_exists == "append":
            have = table_columns(conn, table, dsn)
            missing = [c for c in df.columns if c not in have]
            if missing:
                raise DataError(f"cannot append to '{table}': it lacks the column(s) {', '.join(missing)}")
        if exists and if_exists == "replace":
            tbl.drop(conn)
        if not exists or if_exists == "replace":
            tbl.create(conn)
        try:
            _copy_rows(conn, schema, name, df)
        except Exception as exc:
            if "unique" in str(exc).lower() or "duplicate" in str(exc).lower():
                raise DataError(
                    f"table '{table}' already holds some of these unit/cycle rows; use --if-exists replace"
                ) from None
            raise DataError(f"cannot write table '{table}' ({_scrub(str(exc), dsn)[:300]})") from None
    return len(df)


def drop_table(dsn: str | Path, table: str) -> None:
    """Drop ``table`` if it exists (tests and clean-up)."""
    import sqlalchemy as sa

    schema, name = _split_table(table)
    with _connect(normalize_dsn(dsn), write=True) as conn:
        sa.Table(name, sa.MetaData(), schema=schema).drop(conn, checkfirst=True)


# --------------------------------------------------------------------------- CLI

postgres_app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


@postgres_app.command("import-postgres")
def import_postgres(
    file: Path = typer.Argument(..., help="NASA C-MAPSS file (train_FD00x.txt or test_FD00x.txt)."),
    table: str = typer.Option(..., "--table", "-t", help="Table to create ('name' or 'schema.name')."),
    dsn: str = typer.Option(
        ...,
        "--dsn",
        envvar="KOSMOS_FL_DSN",
        help="postgresql://user:password@host:5432/db; prefer the KOSMOS_FL_DSN variable so the "
        "password stays out of shell history and process lists.",
    ),
    if_exists: str = typer.Option("fail", "--if-exists", help="fail, replace or append."),
) -> None:
    """Load a C-MAPSS file into a PostgreSQL table for the turbofan use case (with true RUL labels
    when a RUL_FD00x.txt lies next to a test file)."""
    from rich.console import Console

    n = import_cmapss(file, table, dsn, if_exists=if_exists)  # type: ignore[arg-type]
    Console().print(
        f"imported {n} rows from {file} into table '{table}' at {redact_dsn(normalize_dsn(dsn))}",
        soft_wrap=True,  # paths and DSNs are copied: never broken across lines (issue 20)
    )
