"""Reading the 2021 KOSMoS ``config.yaml`` files (server and client) as they are.

Each 2021 key is either an alias of today's key or mapped to the closest behaviour here; a key that
has no meaning any more is dropped with one warning line saying what replaced it. The translation
runs on the raw settings before validation, so ``DYNACONF_*`` variables in the 2021 spelling work
too. ``kosmos-fl config migrate OLD.yaml`` prints the translated file (docs/MIGRATING-2021.md).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import yaml

from kosmos_fl.config.client import SITE_KEYS, ClientConfig
from kosmos_fl.config.server import ServerConfig
from kosmos_fl.config.validation import build
from kosmos_fl.errors import ConfigError, KosmosError

log = logging.getLogger("kosmos_fl.config")

#: Keys of the 2021 ``usecase`` mapping on the server; anything else is a 2021 client block.
_USECASE_KEYS = frozenset({"name", "params", "broadcast", "broadcast_params"})
#: 2021 turbofan PostgreSQL parameters, folded into a DSN ``data_path`` and the ``table`` parameter.
_PG_KEYS = ("user_name", "table_name", "password", "host", "port")

#: The server defaults kosmos-fl had before issue 20 (modelled on the 2021 release: 5 rounds, the
#: use case's own model, 1 local epoch of batch 32 at 0.001, no tags), for keys a config leaves out.
#: Today's defaults are the shipped config.yaml's (the tuned ``ratio`` model, 13 rounds); a 2021
#: setup that relied on the old ones writes these keys into its file (docs/MIGRATING-2021.md).
DEFAULTS_2021: dict[str, Any] = {
    "n_federated_train_epoch": 5,
    "tags": {},
    "usecase": {"name": "BearingUseCase", "params": {}, "broadcast_params": {}},
    "training": {"local_epochs": 1, "learning_rate": 0.001, "batch_size": 32, "seed": 42},
}

#: Top-level keys that only a server config has (used to tell the two 2021 files apart).
_SERVER_ONLY = frozenset(
    {"num_clients", "n_federated_train_epoch", "mlflow_server_address", "mlflow_experiment_name", "tags"}
)


def _param_names(usecase_name: str) -> set[str] | None:
    """Parameter names (and aliases) the use case accepts; None for an unknown use case (the
    normal validation names it)."""
    from kosmos_fl.usecases import usecase_class

    try:
        params_cls = usecase_class(str(usecase_name)).Params
    except KosmosError:
        return None
    names: set[str] = set()
    for name, field in params_cls.model_fields.items():
        names.add(name)
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        if isinstance(alias, str):
            names.add(alias)
        elif choices:
            names.update(c for c in choices if isinstance(c, str))
    return names


def _drop_unknown(params: dict[str, Any], usecase: str, where: str, notes: list[str]) -> dict[str, Any]:
    """2021 use cases warned about unused arguments and went on; so do we, once per key."""
    known = _param_names(usecase)
    if known is None:
        return params
    kept = {}
    for key, value in params.items():
        if key in known:
            kept[key] = value
        else:
            notes.append(
                f"config key '{where}.{key}' (2021) is not a parameter of {usecase} and is ignored, "
                f"as 2021 ignored unused use-case arguments; known: {', '.join(sorted(known))}"
            )
    return kept


def _dsn(pg: dict[str, Any]) -> str:
    """The 2021 turbofan database (user, password, host, port, database ``turbofan``) as a DSN."""
    from urllib.parse import quote

    user = quote(str(pg["user_name"]), safe="")
    password = f":{quote(str(pg['password']), safe='')}" if pg.get("password") else ""
    host = pg.get("host") or "127.0.0.1"
    port = pg.get("port") or 5432
    return f"postgresql://{user}{password}@{host}:{port}/turbofan"


def _turbofan_source(params: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """2021 turbofan data location in ``params`` (``file_path``, or the PostgreSQL keys) as a
    ``data_path``, and the remaining parameters (``table_name`` becomes ``table``)."""
    params = dict(params)
    data_path = params.pop("file_path", None)
    if params.get("user_name") is not None:
        pg = {k: params.pop(k, None) for k in _PG_KEYS}
        data_path = _dsn(pg)
        if pg["table_name"] is not None:
            params.setdefault("table", pg["table_name"])
    else:
        for k in _PG_KEYS:
            if params.get(k) is None:
                params.pop(k, None)
    return data_path, params


def _emit(notes: list[str], warn: bool) -> None:
    if warn:
        for note in notes:
            log.warning("warning: %s", note)


def server_settings(
    data: dict[str, Any], warn: bool = False, notes: list[str] | None = None
) -> dict[str, Any]:
    """Today's server settings for ``data`` (2021 or current keys); obsolete keys are dropped
    with a note, logged as warnings when ``warn``."""
    notes = [] if notes is None else notes
    data = dict(data)
    usecase = data.get("usecase")
    if isinstance(usecase, dict):
        usecase = dict(usecase)
        name = str(usecase.get("name", "BearingUseCase"))
        if "broadcast" in usecase:  # 2021 name of broadcast_params
            old = _drop_unknown(dict(usecase.pop("broadcast") or {}), name, "usecase.broadcast", notes)
            usecase["broadcast_params"] = {**old, **(usecase.get("broadcast_params") or {})}
        params = dict(usecase.get("params") or {})
        # 2021 handed usecase.params to the use case, which took the test bearings from there
        for key in ("test_bearings", "test_units"):
            if key in params:
                value = params.pop(key)
                if "test_bearings" not in data and "test_units" not in data:
                    data["test_bearings"] = value
        if name == "TurbofanUseCase":
            data_path, params = _turbofan_source(params)
            if data_path is not None and "data_path" not in data:
                data["data_path"] = data_path
        if "params" in usecase or params:
            usecase["params"] = params  # today's key: an unknown parameter stays an error
        data["usecase"] = usecase
    _emit(notes, warn)
    return data


def client_settings(
    data: dict[str, Any], warn: bool = False, notes: list[str] | None = None
) -> dict[str, Any]:
    """Today's client settings for ``data`` (2021 or current keys); obsolete keys are dropped
    with a note, logged as warnings when ``warn``."""
    notes = [] if notes is None else notes
    data = dict(data)
    if "client_type" in data:
        data.pop("client_type")
        notes.append(
            "config key 'client_type' (2021) is ignored: the 2021 client classes (BasicClient) were "
            "replaced by the built-in Flower ClientApp (kosmos_fl.fl.apps.client_app); remove the key"
        )
    if "num_client_train_epochs" in data:  # 2021 name of the client-side epochs override
        epochs = data.pop("num_client_train_epochs")
        data.setdefault("local_epochs", epochs)
    usecase = data.get("usecase")
    if isinstance(usecase, dict) and set(map(str, usecase)) - _USECASE_KEYS:
        # 2021: usecase.<UseCaseName>.<client id>.<parameters of this site>
        current = {k: v for k, v in usecase.items() if str(k) in _USECASE_KEYS}
        per_client: dict[str, dict[int, dict[str, Any]]] = dict(data.get("per_client") or {})
        for name, blocks in usecase.items():
            if str(name) in _USECASE_KEYS:
                continue
            if not isinstance(blocks, dict):
                raise ConfigError(
                    f"config key 'usecase.{name}': expected a mapping of client ids to settings "
                    f"(the 2021 client shape) or one of {', '.join(sorted(_USECASE_KEYS))}"
                )
            out: dict[int, dict[str, Any]] = {}
            for cid, block in blocks.items():
                try:
                    out[int(cid)] = _site_block(str(name), dict(block or {}), f"usecase.{name}.{cid}", notes)
                except (TypeError, ValueError):
                    raise ConfigError(
                        f"config key 'usecase.{name}.{cid}': client ids are integers (0, 1, ...)"
                    ) from None
            per_client[str(name)] = out
        data["per_client"] = per_client
        if current:
            data["usecase"] = current
        else:
            data.pop("usecase")
    _emit(notes, warn)
    return data


def _site_block(usecase: str, block: dict[str, Any], where: str, notes: list[str]) -> dict[str, Any]:
    """One 2021 per-client block: data location keys stay, the rest must be use-case parameters."""
    if usecase == "TurbofanUseCase":
        data_path, rest = _turbofan_source({k: v for k, v in block.items() if k != "file_path"})
        if data_path is not None:
            rest["data_path"] = data_path
        block = {**({"file_path": block["file_path"]} if "file_path" in block else {}), **rest}
    site = {k: v for k, v in block.items() if k in SITE_KEYS}
    params = _drop_unknown({k: v for k, v in block.items() if k not in SITE_KEYS}, usecase, where, notes)
    return {**site, **params}


Kind = Literal["server", "client"]


def guess_kind(data: dict[str, Any]) -> Kind:
    """``server`` for a file with server-only keys, else ``client``."""
    return "server" if set(data) & _SERVER_ONLY else "client"


def migrate(path: Path, kind: Kind | None = None) -> tuple[Kind, str, list[str]]:
    """The current equivalent of the config file ``path`` as YAML text (no environment applied),
    which file kind it was, and the notes on what was dropped."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass an existing YAML file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        raise ConfigError(f"config file {path} is not valid YAML: fix the syntax") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, not {type(raw).__name__}")
    raw = {str(k).lower(): v for k, v in raw.items()}
    kind = kind or guess_kind(raw)
    notes: list[str] = []
    data = server_settings(raw, notes=notes) if kind == "server" else client_settings(raw, notes=notes)
    # check it: what this prints must load (the caller's file would otherwise fail later)
    build(ServerConfig if kind == "server" else ClientConfig, data)
    header = f"# {kind} config migrated from the 2021 KOSMoS file {path.name} (docs/MIGRATING-2021.md)\n"
    dropped = "".join(f"# dropped: {n}\n" for n in notes)
    former = {k: v for k, v in DEFAULTS_2021.items() if k not in data} if kind == "server" else {}
    if former:
        dropped += (
            "# note: keys left out take the shipped config.yaml's values (the tuned model); to keep "
            "kosmos-fl's former defaults, add:\n"
            + "".join(f"#   {line}\n" for line in yaml.safe_dump(former, sort_keys=False).splitlines())
        )
    if kind == "client" and "usecase" not in data and data.get("per_client"):
        dropped += (
            "# note: a 2021 client served whichever use case the server ran; today a client names "
            "it (usecase: {name: TurbofanUseCase}; default BearingUseCase)\n"
        )
    return kind, header + dropped + yaml.safe_dump(data, sort_keys=False, allow_unicode=True), notes
