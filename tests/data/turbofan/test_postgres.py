"""C-MAPSS in a real PostgreSQL (127.0.0.1:5432, database ``test``; ``scripts/services.sh`` starts
it): import, read back, the turbofan use case from a DSN, and clear errors without credentials."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from kosmos_fl.data.turbofan.cmapss import read_cmapss
from kosmos_fl.data.turbofan.generate import generate_cmapss
from kosmos_fl.data.turbofan.postgres import (
    drop_table,
    import_cmapss,
    import_postgres,
    is_dsn,
    normalize_dsn,
    postgres_app,
    read_cmapss_table,
    redact_dsn,
)
from kosmos_fl.errors import DataError
from kosmos_fl.usecases.turbofan import TurbofanUseCase

DSN = "postgresql://postgres@127.0.0.1:5432/test"
FAKE_PASSWORD = "s3cr3t-Pa55"


@pytest.fixture(scope="module")
def database() -> str:
    """The test database, or a failure that says how to start it (never a silent skip)."""
    import psycopg

    try:
        psycopg.connect(DSN, connect_timeout=5).close()
    except psycopg.Error as exc:
        pytest.fail(f"PostgreSQL at {DSN} is not reachable ({exc}); run `bash scripts/services.sh`")
    return DSN


@pytest.fixture
def table(database: str) -> Iterator[str]:
    """A unique table name, dropped after the test."""
    name = f"kosmos_test_{uuid.uuid4().hex[:10]}"
    yield name
    drop_table(database, name)


@pytest.fixture(scope="module")
def cmapss_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cmapss-pg")
    generate_cmapss(folder, units=8, seed=11)
    return folder


def test_import_and_read_back_identical(database: str, table: str, cmapss_folder: Path) -> None:
    train = cmapss_folder / "train_FD001.txt"
    n = import_cmapss(train, table, database)
    original = read_cmapss(train)
    assert n == len(original)
    back = read_cmapss_table(database, table)
    pd.testing.assert_frame_equal(back, original, check_exact=True)
    some = read_cmapss_table(database, table, columns=["s_2", "s_7"], units=[3, 1])
    assert list(some.columns) == ["unit", "cycle", "s_2", "s_7"]
    assert sorted(some["unit"].unique()) == [1, 3]


def test_if_exists_policies(database: str, table: str, cmapss_folder: Path) -> None:
    train = cmapss_folder / "train_FD001.txt"
    import_cmapss(train, table, database)
    with pytest.raises(DataError, match=f"table '{table}' already exists.*--if-exists replace"):
        import_cmapss(train, table, database)
    with pytest.raises(DataError, match="already holds some of these unit/cycle rows"):
        import_cmapss(train, table, database, if_exists="append")
    assert import_cmapss(train, table, database, if_exists="replace") == len(read_cmapss(train))
    assert len(read_cmapss_table(database, table)) == len(read_cmapss(train))


def test_usecase_from_dsn_equals_file(database: str, table: str, cmapss_folder: Path) -> None:
    train = cmapss_folder / "train_FD001.txt"
    import_cmapss(train, table, database)
    uc = TurbofanUseCase({"table": table})
    from_file = uc.client_dataset(train, ["2", "5"])
    from_db = uc.client_dataset(Path(database), ["2", "5"])  # a DSN survives being a Path
    np.testing.assert_array_equal(from_db.x, from_file.x)
    np.testing.assert_array_equal(from_db.y, from_file.y)
    assert uc.federation_split(database, 2) == uc.federation_split(train, 2)
    assert uc.data_summary(database, None) == uc.data_summary(train, None)
    model = uc.build_model()
    pd.testing.assert_frame_equal(
        uc.predict_table(model, database, all_rows=False), uc.predict_table(model, train, all_rows=False)
    )


def test_test_file_import_carries_true_rul(database: str, table: str, cmapss_folder: Path) -> None:
    test_file = cmapss_folder / "test_FD001.txt"
    import_cmapss(test_file, table, database)
    assert "rul" in read_cmapss_table(database, table).columns
    uc = TurbofanUseCase({"table": table})
    from_db = uc.eval_datasets(database, ["1", "4"])
    from_file = uc.eval_datasets(test_file, ["1", "4"])
    for k in ("unit1", "unit4"):
        np.testing.assert_array_equal(from_db[k].y, from_file[k].y)
        np.testing.assert_array_equal(from_db[k].x, from_file[k].x)


def _no_secret(exc: pytest.ExceptionInfo[DataError]) -> str:
    message = str(exc.value)
    assert FAKE_PASSWORD not in message and "\n" not in message
    assert exc.value.__cause__ is None  # the driver's exception (with its DSN) is not chained
    return message


def test_wrong_dsn_is_a_clear_error_without_the_password(database: str) -> None:
    wrong_port = f"postgresql://postgres:{FAKE_PASSWORD}@127.0.0.1:1/test"
    with pytest.raises(DataError) as info:
        read_cmapss_table(wrong_port, "anything")
    message = _no_secret(info)
    assert "cannot connect to PostgreSQL at postgresql://postgres:***@127.0.0.1:1/test" in message
    assert "check host, port, user, password" in message
    wrong_db = f"postgresql://postgres:{FAKE_PASSWORD}@127.0.0.1:5432/no_such_db_kosmos"
    with pytest.raises(DataError) as info:
        read_cmapss_table(wrong_db, "anything")
    assert 'database "no_such_db_kosmos" does not exist' in _no_secret(info)
    with pytest.raises(DataError) as info:
        TurbofanUseCase({"table": "t"}).client_dataset(Path(wrong_port), None)
    _no_secret(info)


def test_missing_table_and_missing_columns(database: str, table: str) -> None:
    with pytest.raises(DataError, match=f"table '{table}' does not exist.*import-postgres") as info:
        read_cmapss_table(database, table)
    assert "\n" not in str(info.value)
    import sqlalchemy as sa

    engine = sa.create_engine(normalize_dsn(database).replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE TABLE "{table}" (unit bigint, cycle bigint, s_2 double precision)'))
        conn.execute(sa.text(f'INSERT INTO "{table}" VALUES (1, 1, 642.1)'))
    engine.dispose()
    with pytest.raises(DataError, match=f"table '{table}' lacks the column\\(s\\) setting_1, .*s_21"):
        read_cmapss_table(database, table)
    # the use case needs only its sensors: s_2 alone is enough
    uc = TurbofanUseCase({"table": table, "sensors": ["s_2"], "sequence_length": 5})
    assert uc.client_dataset(database, ["1"]).x.shape == (1, 5, 2)
    with pytest.raises(DataError, match="lacks the column\\(s\\) s_3"):
        TurbofanUseCase({"table": table, "sensors": ["s_2", "s_3"]}).client_dataset(database, None)


def test_redact_dsn() -> None:
    assert redact_dsn(f"postgresql://bob:{FAKE_PASSWORD}@db:5432/x") == "postgresql://bob:***@db:5432/x"
    assert redact_dsn(f"postgresql:/bob:{FAKE_PASSWORD}@db/x") == "postgresql:/bob:***@db/x"
    assert redact_dsn("postgresql://bob@db/x") == "postgresql://bob@db/x"
    assert redact_dsn(f"postgresql://db/x?password={FAKE_PASSWORD}&sslmode=require") == (
        "postgresql://db/x?password=***&sslmode=require"
    )
    assert FAKE_PASSWORD not in redact_dsn(f"host=db password='{FAKE_PASSWORD}' user=bob")
    assert FAKE_PASSWORD not in redact_dsn(f"error near postgresql+psycopg://u:{FAKE_PASSWORD}@h/d: boom")
    assert is_dsn("postgresql://h/db") and is_dsn(Path("postgres://h/db")) and not is_dsn("/data/train.txt")
    assert normalize_dsn(Path("postgresql://u@h:5432/db")) == "postgresql://u@h:5432/db"


def test_import_postgres_command(database: str, table: str, cmapss_folder: Path) -> None:
    """Mounted the way the main CLI mounts it (``data_app.add_typer(postgres_app)``)."""
    root = typer.Typer()
    root.add_typer(postgres_app)

    @root.command()
    def other() -> None:  # a second command, so the group keeps its sub-command names
        """Placeholder."""

    dsn_with_password = database.replace("postgres@", f"postgres:{FAKE_PASSWORD}@")
    train = cmapss_folder / "train_FD001.txt"
    result = CliRunner().invoke(
        root, ["import-postgres", str(train), "--table", table, "--dsn", dsn_with_password]
    )
    assert result.exit_code == 0, result.output
    assert f"into table '{table}'" in result.output and FAKE_PASSWORD not in result.output
    assert "postgres:***@127.0.0.1" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output  # never wrapped (issue 20)
    assert len(read_cmapss_table(database, table)) == len(read_cmapss(train))
    with pytest.raises(DataError, match="already exists"):
        import_postgres(train, table, database, if_exists="fail")
