"""The observability pack (deploy/observability/): the alert rules are valid and fire when they
should (promtool), and the alerts and the Grafana dashboard ask only for metrics that exist."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.brokers import brokers_required
from tests.unit.test_metrics_table import documented

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / "deploy" / "observability"
METRIC = re.compile(r"\b(?:orderbus|faststream)_[a-z_]+\b")
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        reason = "no promtool (Debian's prometheus package)"
        if brokers_required():
            pytest.fail(f"ORDERBUS_REQUIRE_BROKERS=1 but {reason}")
        pytest.skip(reason)
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=PACK, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_alert_rules_are_valid() -> None:
    checked = run("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_each_alert_fires_when_it_should_and_only_then() -> None:
    tested = run("test", "rules", "alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_test() -> None:
    rules = yaml.safe_load((PACK / "alerts.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    cases = yaml.safe_load((PACK / "alerts.test.yml").read_text())["tests"]
    tested = {check["alertname"] for case in cases for check in case["alert_rule_test"]}
    assert alerts == tested


def expressions(node: Any) -> list[str]:
    """Every `expr` string anywhere in a dashboard or rules document."""
    if isinstance(node, dict):
        own = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return own + [e for value in node.values() for e in expressions(value)]
    if isinstance(node, list):
        return [e for item in node for e in expressions(item)]
    return []


def asked_for(documents: list[Any]) -> set[str]:
    names = set()
    for expr in (e for document in documents for e in expressions(document)):
        for name in METRIC.findall(expr):
            names.add(next((name[: -len(s)] for s in HISTOGRAM_SERIES if name.endswith(s)), name))
    return names


def test_alerts_and_dashboard_ask_only_for_documented_metrics() -> None:
    dashboard = json.loads((PACK / "grafana" / "orderbus.json").read_text())
    rules = yaml.safe_load((PACK / "alerts.yml").read_text())
    names = asked_for([dashboard, rules])
    assert len(names) >= 10, names  # the parse found the expressions
    unknown = names - {name for name, _type, _labels in documented()}
    assert not unknown, f"not in docs/metrics.md: {sorted(unknown)}"


def test_the_dashboard_panels_are_placed_and_bound_to_the_datasource() -> None:
    dashboard = json.loads((PACK / "grafana" / "orderbus.json").read_text())
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    cells = [
        (x, y)
        for panel in panels
        for x in range(panel["gridPos"]["x"], panel["gridPos"]["x"] + panel["gridPos"]["w"])
        for y in range(panel["gridPos"]["y"], panel["gridPos"]["y"] + panel["gridPos"]["h"])
    ]
    assert len(cells) == len(set(cells)), "panels overlap"
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval"}
            assert used <= variables, (panel["title"], used - variables)


COMPOSE_FILE = ROOT / "docker-compose.yml"
OVERLAY = yaml.safe_load((PACK / "compose.yml").read_text())


def test_the_overlay_is_valid_compose_and_mounts_files_that_exist() -> None:
    schema = json.loads((ROOT / "tests/data/compose-spec.json").read_text())
    jsonschema.Draft7Validator(schema).validate(OVERLAY)
    mounts = [
        volume.split(":")[0]
        for spec in OVERLAY["services"].values()
        for volume in spec.get("volumes", [])
    ]
    assert mounts, "the overlay mounts its configuration"
    for source in mounts:  # relative to the project directory: the first compose file's
        assert (ROOT / source).exists(), source


def test_the_overlay_traces_every_service_with_variables_the_tracing_reads() -> None:
    base = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    apps = {name for name, spec in base.items() if spec.get("command", [""])[0] == "run"}
    traced = {name for name, spec in OVERLAY["services"].items() if name in base}
    assert traced == apps
    tracing = (ROOT / "services/runtime/tracing.py").read_text()
    for name in traced:
        for variable in OVERLAY["services"][name]["environment"]:
            assert f'"{variable}"' in tracing, variable


def test_prometheus_scrapes_every_service_port_and_loads_the_rules(tmp_path: Path) -> None:
    config = yaml.safe_load((PACK / "prometheus.yml").read_text())
    base = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    ports = {
        name: int(spec["ports"][0].rsplit(":", 1)[1])
        for name, spec in base.items()
        if spec.get("command", [""])[0] == "run"
    }
    (job,) = config["scrape_configs"]
    scraped = {sd["names"][0]: sd["port"] for sd in job["dns_sd_configs"]}
    assert scraped == ports
    # promtool checks the file as Prometheus would read it, the rules at their mounted path.
    config["rule_files"] = [str(PACK / "alerts.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    checked = run("check", "config", str(tmp_path / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
