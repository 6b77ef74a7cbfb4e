"""The ``kosmos-fl`` command. Sub-commands live next to the code they drive; this file mounts them.

User mistakes surface as :class:`kosmos_fl.errors.KosmosError` and are printed as one line
(``error: ...``) with exit code 2, never as a traceback.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import typer

from kosmos_fl import __version__
from kosmos_fl.cli._console import cli_logging, json_requested, say, setting_up_logs
from kosmos_fl.cli.data import app as data_app
from kosmos_fl.cli.machine import app as machine_app
from kosmos_fl.cli.security import certs_app, clients_app
from kosmos_fl.cli.session import app as session_app
from kosmos_fl.errors import FederationError, KosmosError

app = typer.Typer(
    name="kosmos-fl",
    help="Federated learning of remaining useful life (RUL) for predictive maintenance.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data_app, name="data", help="Prepare, generate and inspect bearing / turbofan data.")
app.add_typer(certs_app, name="certs", help="Development certificates (CA, server, clients).")
app.add_typer(clients_app, name="clients", help="Onboard, list and revoke clients (credentials).")
app.add_typer(machine_app, name="machine", help="Machine data over MQTT: replay, collect, status.")
app.add_typer(session_app, name="session", help="Sessions of a running server: start one now.")
config_app = typer.Typer(no_args_is_help=True)
models_app = typer.Typer(no_args_is_help=True)
app.add_typer(models_app, name="models", help="Registered models: register a session's model again.")
app.add_typer(
    config_app, name="config", help="Configuration files: check, show (with sources), migrate a 2021 config."
)


def _version(value: bool) -> None:
    if value:
        print(f"kosmos-fl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True),
) -> None:
    """Federated learning of remaining useful life (RUL) for predictive maintenance."""


LOG_JSON_HELP = "Log one JSON object per line (with session and client ids); config: log_format: json."


CONFIG_HELP = (
    "YAML config file (2021 keys; default ./config.yaml or ./client.yaml if present); "
    "DYNACONF_<key> environment variables override it."
)


def _default_file(name: str) -> Path | None:
    path = Path(name)
    return path if path.is_file() else None


@app.command()
def server(
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue the newest interrupted session (crash, restart) from its last completed round, "
        "in the same MLflow run, once its clients registered again. Same as resume: true.",
    ),
    insecure: bool = typer.Option(False, "--insecure", help="Accept plain traffic on network addresses."),
    log_json: bool = typer.Option(False, "--log-json", help=LOG_JSON_HELP),
) -> None:
    """Run the KOSMoS server: Socket.IO control plane, Flower SuperLink, sessions, MLflow."""
    import asyncio

    from kosmos_fl.config import ServerConfig, load_server_config
    from kosmos_fl.coordinator.server import serve

    config = config or _default_file("config.yaml")
    if log_json:  # JSON from the first line on, also for the config's own warnings
        cli_logging(verbose, True)
    with setting_up_logs():  # (else its warnings wait for the log_format it says)
        cfg = load_server_config(config, resume=resume or None, insecure=insecure or None)
        cli_logging(verbose or cfg.debug, log_json or cfg.log_format == "json")
    base = config.parent.resolve() if config else Path.cwd()

    def reload() -> ServerConfig:  # SIGHUP: the same file and environment, read again
        return load_server_config(config, resume=resume or None, insecure=insecure or None)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(cfg, base, reload=reload))


@app.command()
def client(
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    name: str | None = typer.Option(None, "--name", help="Client name shown to the server."),
    once: bool = typer.Option(False, "--once", help="Exit after one training session."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
    insecure: bool = typer.Option(False, "--insecure", help="Accept plain traffic to a network server."),
    log_json: bool = typer.Option(False, "--log-json", help=LOG_JSON_HELP),
) -> None:
    """Run a KOSMoS client: check criteria, register, train when the server starts a session."""
    import asyncio
    import signal

    from kosmos_fl.config import load_client_config
    from kosmos_fl.coordinator.client import KosmosClient

    config = config or _default_file("client.yaml")
    if log_json:
        cli_logging(verbose, True)
    with setting_up_logs():
        cfg = load_client_config(config, client_name=name, insecure=insecure or None)
        cli_logging(verbose or cfg.debug, log_json or cfg.log_format == "json")
    base = config.parent.resolve() if config else Path.cwd()
    kc = KosmosClient(cfg, base, once=once)
    with contextlib.suppress(KeyboardInterrupt):
        result = asyncio.run(kc.run())
        if kc.signals:  # Ctrl-C or SIGTERM: one line, no traceback; 130 after SIGINT as shells expect
            how = "interrupted (Ctrl-C)" if signal.SIGINT in kc.signals else "stopped (SIGTERM)"
            say(f"client {kc.name}: {how}; left the server cleanly")
            sys.exit(130 if signal.SIGINT in kc.signals else 0)
        if once and (result is None or result.get("status") != "completed"):
            raise FederationError(f"the session did not complete: {(result or {}).get('reason')}")


MODEL_HELP = (
    "A registered model's name (then its @champion version: the best model so far on the server's "
    "test data), or an MLflow model URI: models:/<name>/<version>, models:/<name>@<alias>"
)


@app.command()
def predict(
    model: str = typer.Option("kosmos-BearingUseCase", "--model", "-m", help=MODEL_HELP),
    data: Path = typer.Option(..., "--data", "-d", help="Folder of bearings (or data file of the use case)."),
    all_rows: bool = typer.Option(False, "--all", help="Predict every snapshot, not only the last."),
    mlflow_uri: str | None = typer.Option(
        None,
        "--mlflow",
        help="mlflow_server_address the model lives in (default: $MLFLOW_TRACKING_URI, ./mlruns).",
    ),
) -> None:
    """Print predicted remaining useful life as CSV (first columns: unit, RUL)."""
    from kosmos_fl.serving import mlflow_address_or_env, predict_csv

    address = mlflow_address_or_env(mlflow_uri)
    sys.stdout.write(predict_csv(model, data, all_rows=all_rows, mlflow_address=address))


@app.command()
def serve(
    model: str = typer.Option("kosmos-BearingUseCase", "--model", "-m", help=MODEL_HELP),
    mlflow_uri: str | None = typer.Option(
        None,
        "--mlflow",
        help="mlflow_server_address the model lives in (default: $MLFLOW_TRACKING_URI, ./mlruns).",
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(5001, "--port", help="Port to listen on."),
) -> None:
    """Serve a registered model over HTTP (MLflow's /invocations protocol), weights checked first."""
    from kosmos_fl.serving import mlflow_address_or_env
    from kosmos_fl.serving import serve as serve_model

    serve_model(model, mlflow_address_or_env(mlflow_uri), host, port)


@models_app.command("register")
def models_register(
    session: Path = typer.Option(..., "--session", help="The session folder: <work_dir>/sessions/<id>."),
    mlflow_uri: str | None = typer.Option(
        None, "--mlflow", help="MLflow store (default: the one the session used)."
    ),
) -> None:
    """Register a session's final model again (as plain weights) from its last checkpoint."""
    from kosmos_fl.serving import reregister

    typer.echo(reregister(session, mlflow_uri))


@app.command()
def demo(
    data: Path | None = typer.Option(None, "--data", help="Real FEMTO bearing folders (default: generated)."),
    usecase: str = typer.Option("BearingUseCase", "--usecase", help="Use case to run."),
    rounds: int | None = typer.Option(None, "--rounds", help="Federated rounds (default: config)."),
    work_dir: Path = typer.Option(Path("kosmos-work/demo"), "--work-dir", help="Where everything goes."),
    mlflow_uri: str = typer.Option("./mlruns", "--mlflow", help="MLflow store (path or URL)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="Server config to start from."),
) -> None:
    """Run a whole federation on this machine: server + 3 clients as processes, one session."""
    from kosmos_fl.demo import run_demo

    run_demo(
        data=data, usecase=usecase, rounds=rounds, work_dir=work_dir, mlflow_address=mlflow_uri, config=config
    )


@app.command()
def simulate(
    clients: int = typer.Option(10, "--clients", "-n", help="Number of virtual clients."),
    rounds: int | None = typer.Option(None, "--rounds", help="Federated rounds (default: config)."),
    data: Path | None = typer.Option(None, "--data", help="Real data set (default: generated)."),
    snapshots: int = typer.Option(200, "--snapshots", help="Snapshots per generated bearing."),
    work_dir: Path = typer.Option(
        Path("kosmos-work/simulation"), "--work-dir", help="Where everything goes."
    ),
    mlflow_uri: str = typer.Option("./mlruns", "--mlflow", help="MLflow store (path or URL)."),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Server config: use case, strategy, training."
    ),
    cpus: int | None = typer.Option(None, "--cpus", help="CPUs Ray may use (default: all)."),
) -> None:
    """Run the session's ServerApp and ClientApp on Flower's simulation engine (Ray) with N
    virtual clients partitioned from one data set: strategy research before a roll-out."""
    from kosmos_fl.cli.simulate import run_simulate

    run_simulate(
        clients=clients, rounds=rounds, data=data, snapshots=snapshots, work_dir=work_dir,
        mlflow_address=mlflow_uri, config=config, cpus=cpus,
    )  # fmt: skip


def _explain(config: Path | None, client: bool) -> tuple[str, Path | None, list[tuple[str, str, str]]]:
    """(kind, file read, rows of :func:`kosmos_fl.config.explain.explain`) for config check/show."""
    from kosmos_fl.config.explain import explain

    path = config or _default_file("client.yaml" if client else "config.yaml")
    rows = explain(path, "client" if client else "server")
    return ("client" if client else "server"), path, list(rows)


@config_app.command("check")
def config_check(
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    client: bool = typer.Option(False, "--client", help="A client config (client.yaml), not a server one."),
) -> None:
    """Validate a config (file plus DYNACONF_* environment) without starting anything."""
    kind, path, rows = _explain(config, client)
    counts = {src: sum(1 for r in rows if r[2] == src) for src in ("file", "env")}
    where = str(path) if path else "built-in defaults"
    print(
        f"{where}: a valid {kind} config "
        f"({counts['file']} keys from the file, {counts['env']} from the environment)"
    )


@config_app.command("show")
def config_show(
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    client: bool = typer.Option(False, "--client", help="A client config (client.yaml), not a server one."),
) -> None:
    """Every key's effective value and where it came from: default, file or environment."""
    from rich.console import Console
    from rich.table import Table

    kind, path, rows = _explain(config, client)
    table = Table(title=f"{kind} config: {path or 'built-in defaults'}", title_justify="left")
    for col in ("key", "value", "from"):
        table.add_column(col, overflow="fold")
    for key, value, source in rows:
        table.add_row(key, value, source)
    Console(width=160).print(table)


@config_app.command("migrate")
def config_migrate(
    path: Path = typer.Argument(..., help="A 2021 KOSMoS config.yaml (server or client)."),
    kind: str | None = typer.Option(
        None, "--kind", help="server or client (default: guessed from the keys)."
    ),
) -> None:
    """Print the current equivalent of a 2021 config file; it loads without warnings."""
    from kosmos_fl.config.compat2021 import migrate
    from kosmos_fl.errors import ConfigError

    if kind not in (None, "server", "client"):
        raise ConfigError(f"--kind must be server or client, not {kind!r}")
    _, text, _ = migrate(path, kind)  # type: ignore[arg-type]
    sys.stdout.write(text)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the Typer app and turn user errors into one clean line (a JSON object with
    ``--log-json``)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        app(args=argv, standalone_mode=False)
    except KosmosError as exc:
        say(str(exc), level="error", markup=f"[bold red]error:[/] {exc}", json_logs=json_requested(args))
        sys.exit(2)
    except typer.Abort:
        say("aborted", json_logs=json_requested(args))
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.ClickException):
            if json_requested(args):
                say(exc.format_message(), level="error", json_logs=True)
            else:
                exc.show()
            sys.exit(exc.exit_code)
        raise
