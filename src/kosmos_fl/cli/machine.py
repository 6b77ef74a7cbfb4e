"""``kosmos-fl machine``: replay recorded bearings to MQTT, collect them, inspect what was collected."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from pathlib import Path

import typer
from pydantic import SecretStr, ValidationError
from rich.console import Console

from kosmos_fl.errors import ConfigError

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Machine-side data over MQTT: replay recordings, collect them at a client, show status.",
)
console = Console(stderr=True)

PASSWORD_ENV = "KOSMOS_MQTT_PASSWORD"


def _edge_config(broker: str, username: str | None, tls_ca: Path | None, insecure: bool):
    from kosmos_fl.config.edge import EdgeConfig, TlsConfig

    password = os.environ.get(PASSWORD_ENV)
    try:
        tls = TlsConfig(ca_file=str(tls_ca), insecure=insecure) if tls_ca or insecure else None
        return EdgeConfig(
            broker=broker,
            topics=["#"],
            username=username,
            password=SecretStr(password) if password else None,
            tls=tls,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"--{err['loc'][0] if err['loc'] else 'broker'}: {err['msg']}") from None


@app.command()
def replay(
    bearing_dir: Path = typer.Argument(
        ..., help="A FEMTO bearing folder (or a folder of them, replayed in order)."
    ),
    broker: str = typer.Option(
        "mqtt://127.0.0.1:1883", "--broker", "-b", help="mqtt://host:port or mqtts://..."
    ),
    topic: str = typer.Option(..., "--topic", "-t", help="Topic to publish snapshots and events on."),
    speed: float = typer.Option(1.0, "--speed", "-s", help="Multiple of real time (0: as fast as possible)."),
    machine_id: str = typer.Option("machine-1", "--machine-id", help="Machine id put into every payload."),
    stride: int = typer.Option(1, "--stride", help="Publish every n-th snapshot only."),
    limit: int | None = typer.Option(None, "--limit", help="Publish only the last N (kept) snapshots."),
    no_failure: bool = typer.Option(False, "--no-failure", help="Do not publish the failure event."),
    encoding: str = typer.Option(
        "f32le-base64", "--encoding", help="Channel encoding: f32le-base64 or json."
    ),
    username: str | None = typer.Option(
        None, "--username", help=f"Broker user (password from ${PASSWORD_ENV})."
    ),
    tls_ca: Path | None = typer.Option(None, "--tls-ca", help="CA file of the broker's certificate."),
    tls_insecure: bool = typer.Option(False, "--tls-insecure", help="Skip the host name check."),
) -> None:
    """Publish a bearing's recordings snapshot by snapshot, then its failure/replacement event."""
    from kosmos_fl.edge.replay import replay as run_replay

    if encoding not in ("f32le-base64", "json"):
        raise ConfigError(f"--encoding must be f32le-base64 or json, not {encoding!r}")
    cfg = _edge_config(broker, username, tls_ca, tls_insecure)
    result = run_replay(
        bearing_dir,
        cfg,
        topic,
        machine_id=machine_id,
        speed=speed,
        stride=stride,
        limit=limit,
        failure_event=not no_failure,
        encoding=encoding,  # type: ignore[arg-type]
    )
    console.print(
        f"published {result.snapshots} snapshots and {result.events} failure event(s) of "
        f"{', '.join(result.bearings)} to {topic} in {result.seconds:.1f} s",
        highlight=False,
    )


def _client_edge(config: Path | None):
    from kosmos_fl.config import load_client_config

    cfg = load_client_config(config)
    if cfg.edge is None:
        raise ConfigError(
            f"{config or 'the client config'} has no 'edge' section; add edge.topics and edge.broker"
        )
    base = config.parent.resolve() if config else Path.cwd()
    return cfg, base


@app.command()
def ingest(
    config: Path | None = typer.Option(None, "--config", "-c", help="Client config with an 'edge' section."),
) -> None:
    """Collect this site's machine data without joining a federation (until Ctrl-C)."""
    from kosmos_fl.cli._console import cli_logging
    from kosmos_fl.edge.site import EdgeSite

    cli_logging(False)
    cfg, base = _client_edge(config)
    site = EdgeSite(cfg.edge, base, cfg.client_name or "client")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    site.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        site.stop()


@app.command()
def status(
    config: Path | None = typer.Option(None, "--config", "-c", help="Client config with an 'edge' section."),
) -> None:
    """Print what this site collected and whether it meets its criteria, as JSON."""
    from kosmos_fl.edge.site import edge_criteria

    cfg, base = _client_edge(config)
    verdict, processed, counters = edge_criteria(cfg.edge, base, None)
    doc = {
        "eligible": verdict.eligible,
        "reason": verdict.reason,
        "summary": verdict.summary,
        "counters": counters,
        "processed": str(processed),
    }
    with contextlib.suppress(BrokenPipeError):
        print(json.dumps(doc, indent=1))
