"""What deploy/ hands Prometheus and Grafana users: the alert rules pass ``promtool check
rules`` and their unit tests (``promtool test rules``, Debian's prometheus package), every
rule is tested firing and not firing, and every metric the rules and the dashboard query
is one a real scrape of /metrics serves."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from aegis import api
from aegis.core.config import Settings
from tests.support.required import skip_or_fail
from tests.support.seeds import seed_metrics
from tests.support.web import beat, metric_samples, serving

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "aegis-rules.yaml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "aegis-rules.test.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "aegis-dashboard.json"

# series Prometheus makes itself, not aegis
PROMETHEUS_OWN = {"up"}
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
                "group_left", "group_right", "inf", "nan"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:]|\s*\()")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: its identifiers outside strings,
    label matchers, ranges and grouping clauses that are neither functions nor keywords."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    return {name for name in _NAME.findall(text) if name.lower() not in PROMQL_WORDS}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        skip_or_fail("no promtool (Debian's prometheus package; tests/ensure_promtool.sh "
                     "installs it)")
    return found


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", ())


def dashboard_exprs(board: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in panels(board) for target in panel.get("targets", ())]


def test_the_rules_pass_promtool_check_rules() -> None:
    result = run_promtool("check", "rules", RULES.name, cwd=RULES.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_the_rules_pass_their_unit_tests() -> None:
    result = run_promtool("test", "rules", RULE_TESTS.name, cwd=RULES.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_rule_is_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in load_yaml(RULE_TESTS)["tests"]:
        for check in case.get("alert_rule_test", ()):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = {rule["alert"] for rule in rules()}
    assert alerts - firing == set(), "rules never tested firing"
    assert alerts - quiet == set(), "rules never tested not firing"


def test_every_rule_has_a_severity_a_summary_and_a_description() -> None:
    for rule in rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert set(rule["annotations"]) == {"summary", "description"}, rule["alert"]


def test_every_dashboard_expression_parses(tmp_path: Path) -> None:
    """promtool parses PromQL in rule files only: each expression of the dashboard, its
    variables given a value, becomes a recording rule that ``check rules`` parses."""
    exprs = dashboard_exprs(dashboard())
    recorded = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"aegis:dashboard:{index}", "expr": expr.replace("$host", ".*")}
        for index, expr in enumerate(exprs)]}]}
    (tmp_path / "dashboard-rules.yaml").write_text(yaml.safe_dump(recorded), encoding="utf-8")
    result = run_promtool("check", "rules", "dashboard-rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_takes_its_datasource_and_hosts_as_variables() -> None:
    board = dashboard()
    assert [entry["name"] for entry in board["__inputs"]] == ["DS_PROMETHEUS"]
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
    (host,) = board["templating"]["list"]
    assert host["name"] == "host"
    assert host["query"]["query"] == "label_values(aegis_info, host)"
    # every query of a series that has a host label picks the chosen hosts
    for expr in dashboard_exprs(board):
        per_host = {"aegis_container_health", "aegis_container_strikes", "aegis_containers",
                    "aegis_incidents_open", "aegis_container_restarts_total",
                    "aegis_container_escalations_total"}
        if metric_names(expr) & per_host:
            assert 'host=~"$host"' in expr, expr


def test_metric_names_are_read_from_promql() -> None:
    assert metric_names('max by (job, status) (aegis_job_runs{status=~"a|b"}) == 1') \
        == {"aegis_job_runs"}
    assert metric_names("histogram_quantile(0.95, max by (job, le) "
                        "(aegis_job_duration_seconds_bucket[5m] offset 1h))") \
        == {"aegis_job_duration_seconds_bucket"}
    assert metric_names('aegis_a * on (instance) group_left (host) aegis_info{host=~"$host"}'
                        " or vector(0) unless time() - up") == {"aegis_a", "aegis_info", "up"}


@pytest.fixture
def served_names(app: api.Aegis, settings: Settings, database_url: str) -> set[str]:
    """The sample names of one scrape of /metrics over a database with a row behind every
    series."""
    now = datetime.now(UTC)  # the database's now() decides the 24-hour windows
    beat(settings, now)
    seed_metrics(database_url, now)
    with serving(app, now) as url, urllib.request.urlopen(url + "/metrics", timeout=15) as answer:
        text = answer.read().decode()
    return {name for name, _ in metric_samples(text)}


def test_every_metric_the_rules_query_is_served(served_names: set[str]) -> None:
    queried = set().union(*(metric_names(rule["expr"]) for rule in rules()))
    assert queried - served_names - PROMETHEUS_OWN == set()
    assert {"aegis_container_health", "aegis_incidents_open"} <= served_names


def test_every_metric_the_dashboard_queries_is_served(served_names: set[str]) -> None:
    board = dashboard()
    queried = set().union(*(metric_names(expr) for expr in dashboard_exprs(board)))
    queried.add(re.sub(r"label_values\((\w+),.*", r"\1",
                       board["templating"]["list"][0]["query"]["query"]))
    assert queried - served_names - PROMETHEUS_OWN == set()
    assert "aegis_container_health" in queried
