"""``kosmos-fl certs ...`` and ``kosmos-fl clients ...``: development certificates and onboarding."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from kosmos_fl.security.clients import ClientRegistry

certs_app = typer.Typer(no_args_is_help=True, add_completion=False)
clients_app = typer.Typer(no_args_is_help=True, add_completion=False)
console = Console()

CONFIG_OPT = typer.Option(
    None, "--config", "-c", help="Server config (finds tls.ca_certfile, clients_file, work_dir)."
)


@certs_app.command("init")
def certs_init(
    directory: Path = typer.Option(Path("certs"), "--dir", help="Where to write the CA and certificates."),
    host: list[str] = typer.Option([], "--host", help="Extra server host name or IP (repeatable)."),
    client: list[str] = typer.Option([], "--client", help="Also issue a client certificate (repeatable)."),
    force: bool = typer.Option(
        False, "--force", help="Replace an existing CA (invalidates issued certificates)."
    ),
) -> None:
    """Create a development CA, a server certificate (localhost, 127.0.0.1, --host) and client certs."""
    from kosmos_fl.security.certs import init

    paths = init(directory, host, client, force=force)
    console.print(f"CA          {paths.ca_cert}  (key {paths.ca_key}, mode 0600: keep it offline)")
    console.print(f"server      {paths.server_cert}  (key {paths.server_key})")
    for name, (cert, _key) in paths.clients.items():
        console.print(f"client      {name}: {cert}")
    console.print(
        "config.yaml:\n  tls:\n"
        f"    certfile: {paths.server_cert}\n    keyfile: {paths.server_key}\n"
        f"    ca_certfile: {paths.ca_cert}",
        highlight=False,
    )


def _registry(config: Path | None) -> tuple[ClientRegistry, Path | None]:
    """The registry and CA certificate named by the server config (paths relative to it)."""
    from kosmos_fl.config import load_server_config

    if config is None and Path("config.yaml").is_file():
        config = Path("config.yaml")
    cfg = load_server_config(config)
    base = config.parent.resolve() if config else Path.cwd()
    path = Path(cfg.clients_file or Path(cfg.work_dir) / "security" / "clients.json").expanduser()
    ca = Path(cfg.tls.ca_certfile).expanduser() if cfg.tls.ca_certfile else None
    return ClientRegistry(path if path.is_absolute() else base / path), (
        None if ca is None else (ca if ca.is_absolute() else base / ca)
    )


@clients_app.command("add")
def clients_add(
    name: str = typer.Argument(..., help="The site's name (letters, digits, . _ -)."),
    config: Path | None = CONFIG_OPT,
    out: Path = typer.Option(Path("client-bundles"), "--out", help="Folder the bundle is written into."),
) -> None:
    """Onboard a client: token + SuperNode key pair (+ CA, client certificate) in a bundle for the site."""
    registry, ca = _registry(config)
    bundle = registry.add(name, out, ca)
    console.print(
        f"client {name} added; hand the folder {bundle} to the site (it holds secrets: send it privately)"
    )
    console.print(f"site client.yaml:  credentials: {bundle}", highlight=False)
    if ca is None:
        console.print("[yellow]note:[/] no tls.ca_certfile in the server config, so the bundle has no ca.pem")


@clients_app.command("list")
def clients_list(config: Path | None = CONFIG_OPT) -> None:
    """List onboarded clients and whether they are active or revoked."""
    registry, _ = _registry(config)
    table = Table("name", "state", "created", "revoked")
    for e in registry.load().values():
        table.add_row(e.name, "active" if e.active else "revoked", e.created_at, e.revoked_at or "")
    console.print(table)


@clients_app.command("revoke")
def clients_revoke(name: str = typer.Argument(...), config: Path | None = CONFIG_OPT) -> None:
    """Revoke a client: refused at its next connection, cannot take part in the next session."""
    registry, _ = _registry(config)
    entry = registry.revoke(name)
    console.print(f"client {name} revoked at {entry.revoked_at}")
