"""The observability kit (issue 20): deploy/prometheus and deploy/grafana against the real tools
and the server's real /metrics.

promtool (Debian's ``prometheus`` package, installed by scripts/services.sh) checks the scrape
config, the alert rules, their unit tests (each alert fires on the series the server exports) and
the syntax of every dashboard query. Every metric the rules and the dashboard read must be one
that :class:`~kosmos_fl.coordinator.metrics.FederationMetrics` exports, so a renamed metric breaks
here, not silently in somebody's Grafana.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from kosmos_fl.coordinator.metrics import FederationMetrics

REPO = Path(__file__).resolve().parents[1]
PROM = REPO / "deploy" / "prometheus"
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "kosmos-fl.json"
#: Grafana's built-in variables, replaced by what Grafana would send before promtool parses a query.
BUILTINS = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "15s"}
#: Series Prometheus itself adds to every target.
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def promtool(*args: str, cwd: Path = PROM) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail(
            "promtool not installed; `make test` installs it (scripts/services.sh: Debian package prometheus)"
        )
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd, check=False, timeout=120)


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return doc


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def dashboard_queries(rate_interval: str = BUILTINS["$__rate_interval"]) -> list[str]:
    """Every panel's PromQL, with Grafana's variables filled in as Grafana would."""
    exprs = [t["expr"] for p in panels() for t in p["targets"]]
    values = {"$instance": ".*", "$metric": "RMSE", **BUILTINS, "$__rate_interval": rate_interval}
    out = []
    for expr in exprs:
        for var, value in sorted(values.items(), key=lambda kv: -len(kv[0])):
            expr = expr.replace(var, value)
        assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
        out.append(expr)
    return out


def rule_exprs() -> list[str]:
    doc = yaml.safe_load((PROM / "kosmos-alerts.yml").read_text(encoding="utf-8"))
    return [r["expr"] for g in doc["groups"] for r in g["rules"]]


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects: the identifiers left once label matchers, ranges,
    strings and grouping clauses are removed, that are neither functions nor keywords (enough for
    our own queries; promtool has checked their syntax)."""
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", "", expr)
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", bare)
    keywords = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
    return {
        m.group()
        for m in re.finditer(r"(?<![\w.])[a-zA-Z_:][\w:]*", bare)
        if m.group().lower() not in keywords and not bare[m.end() :].lstrip().startswith("(")
    }


def exported_names() -> set[str]:
    """Sample names the server's /metrics has once a round and a client were seen."""
    snap = {"client_states": ["eligible"], "client_names": [("site-a", "eligible")], "waiting": 1,
            "needed": 2, "running": True, "round": 1, "rounds": 3, "max_epsilon": 8.0}  # fmt: skip
    metrics = FederationMetrics(lambda: snap)
    metrics.observe_round({"round": 1, "metrics": {"RMSE": 1.0, "RMSE_B1": 1.0}, "round_seconds": 2.0,
                           "client": {"train_loss": 0.1}, "bytes_sent": 1.0, "dp_epsilon": 1.0})  # fmt: skip
    fams = text_string_to_metric_families(metrics.exposition().decode())
    return {s.name for f in fams for s in f.samples} | SYNTHETIC


# -- Prometheus -------------------------------------------------------------------------------


def test_scrape_config_and_alert_rules_pass_promtool() -> None:
    for args in (("check", "config", "prometheus.yml"), ("check", "rules", "kosmos-alerts.yml")):
        res = promtool(*args)
        assert res.returncode == 0, f"promtool {' '.join(args)}:\n{res.stdout}{res.stderr}"


def test_every_alert_fires_in_its_rules_unit_test() -> None:
    """kosmos-alerts.test.yml feeds each alert the series a server exports and expects it to fire
    (and to stay quiet before); a broken expression or threshold fails here."""
    res = promtool("test", "rules", "kosmos-alerts.test.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    rules = yaml.safe_load((PROM / "kosmos-alerts.yml").read_text(encoding="utf-8"))
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tests = yaml.safe_load((PROM / "kosmos-alerts.test.yml").read_text(encoding="utf-8"))
    fired = {
        t["alertname"] for case in tests["tests"] for t in case["alert_rule_test"] if t.get("exp_alerts")
    }
    assert fired == alerts, f"alerts without a test that fires them: {sorted(alerts - fired)}"
    assert {"KosmosSessionFailed", "KosmosNoSuccessfulSession", "KosmosClientOffline",
            "KosmosPrivacyBudgetNearlySpent"} <= alerts  # fmt: skip


def test_scrape_target_is_the_compose_servers_metrics_address() -> None:
    cfg = yaml.safe_load((PROM / "prometheus.yml").read_text(encoding="utf-8"))
    targets = [t for job in cfg["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    port = compose["services"]["server"]["environment"]["DYNACONF_metrics_address"].rsplit(":", 1)[1]
    assert targets == [f"server:{port}"]


# -- Grafana ----------------------------------------------------------------------------------


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    """promtool parses each query (as a recording rule) with Prometheus' own parser; a broken
    query in the same file is refused, so the check can fail."""

    def check(exprs: list[str]) -> subprocess.CompletedProcess[str]:
        rules = {"groups": [{"name": "dashboard", "rules": [
            {"record": f"kosmos:dashboard_query_{i}", "expr": e} for i, e in enumerate(exprs)]}]}  # fmt: skip
        path = tmp_path / "dashboard-queries.yml"
        path.write_text(yaml.safe_dump(rules), encoding="utf-8")
        return promtool("check", "rules", str(path), cwd=tmp_path)

    queries = dashboard_queries()
    res = check(queries)
    assert res.returncode == 0, res.stdout + res.stderr
    assert check([*queries, "sum by (status) (kosmos_sessions_total"]).returncode != 0


def test_every_metric_the_dashboard_and_alerts_read_is_exported() -> None:
    exported = exported_names()
    for source, exprs in (("dashboard", dashboard_queries()), ("alert rules", rule_exprs())):
        for expr in exprs:
            names = metric_names(expr)
            assert names, f"{source}: no metric in {expr!r}"
            missing = names - exported
            assert not missing, f"{source}: {sorted(missing)} not in /metrics (query {expr!r})"
    assert metric_names('sum by (le) (rate(kosmos_x_bucket{a="b"}[5m])) > 2 * 3600') == {"kosmos_x_bucket"}


def test_dashboard_is_well_formed() -> None:
    """What Grafana needs to load and lay out the dashboard: unique ids, panels inside the 24
    columns and not overlapping, every query on the datasource variable, every panel with a unit
    and a description, every variable used defined."""
    doc = dashboard()
    assert doc["uid"] == "kosmos-fl" and isinstance(doc["schemaVersion"], int)
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for p in doc["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        for cell in ((x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])):
            assert cell not in cells, f"{p['title']!r} overlaps {cells[cell]!r}"
            cells[cell] = p["title"]
    for p in panels():
        assert p["type"] in {"stat", "timeseries", "table", "bargauge", "gauge"}, p["type"]
        assert p["description"] and p["fieldConfig"]["defaults"]["unit"], p["title"]
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["datasource"] == p["datasource"] and t["expr"], p["title"]
            used = set(re.findall(r"\$(\w+)", t["expr"] + p["title"])) - {b[1:] for b in BUILTINS}
            assert used <= set(variables), f"{p['title']}: undefined variables {used - set(variables)}"


def test_grafana_provisioning_matches_compose() -> None:
    """The provisioned datasource is the compose Prometheus, the dashboard provider reads the
    folder compose mounts the dashboards into."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    grafana = compose["services"]["grafana"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"] if v.startswith("./"))
    assert (REPO / "deploy/grafana/provisioning").exists() and mounts[
        "./deploy/grafana/provisioning"
    ] == "/etc/grafana/provisioning"
    ds = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text(encoding="utf-8"))
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    prov = yaml.safe_load((GRAFANA / "provisioning/dashboards/kosmos-fl.yml").read_text(encoding="utf-8"))
    (provider,) = prov["providers"]
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert set(compose["services"]["prometheus"]["profiles"]) == set(grafana["profiles"]) == {"observability"}


def _lost(a: Any, b: Any, path: str = "") -> list[str]:
    """Paths of ``a`` missing or different in ``b`` (what ``b`` adds, defaults, is fine)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [p for k in a for p in ([f"{path}/{k}"] if k not in b else _lost(a[k], b[k], f"{path}/{k}"))]
    if isinstance(a, list) and isinstance(b, list):
        return [path] * (len(a) != len(b)) + [
            p for i, (x, y) in enumerate(zip(a, b, strict=False)) for p in _lost(x, y, f"{path}[{i}]")
        ]
    return [] if a == b else [path]


def test_dashboard_round_trips_through_grafanas_own_schema_models() -> None:
    """grafana-foundation-sdk (Grafana Labs' models generated from Grafana 11.6's dashboard schema,
    with the panel and Prometheus query plugins) decodes the dashboard and encodes it again: a key
    the schema does not know, at any depth (a misspelt ``legendFormat``, ``fieldConfig``,
    ``gridPos.w``, a panel option), is dropped on the way and reported here."""
    import copy

    from grafana_foundation_sdk.cog import plugins
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    plugins.register_default_plugins()

    def round_trip(doc: dict[str, Any]) -> Any:
        return json.loads(json.dumps(Dashboard.from_json(doc), cls=JSONEncoder))

    doc = dashboard()
    assert _lost(doc, round_trip(doc)) == []
    broken = copy.deepcopy(doc)
    target = next(p for p in broken["panels"] if p["type"] == "timeseries")["targets"][0]
    target["legendformat"] = target.pop("legendFormat")
    assert [p for p in _lost(broken, round_trip(broken)) if p.endswith("/legendformat")]
