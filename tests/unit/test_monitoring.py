"""The shipped alert rules and dashboard (envoy/monitoring/) are valid and match /metrics.

* ``promtool check rules`` accepts the rules and ``promtool test rules`` runs a
  unit test for every alert (promtool comes from Debian's ``prometheus``
  package; ``.ci/setup`` extracts it into ``.venv/bin`` without starting a
  server);
* every alert carries ``severity`` and ``team`` labels and a ``runbook_url``
  whose anchor is a heading in docs/on-call.md;
* every metric the rules and the dashboard query is one the control plane
  actually exports (read from a real :class:`Metrics` registry's exposition).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from xds.service.metrics import GroupSample, Metrics, SentinelSample, StateSample

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "envoy" / "monitoring"
RULES = MONITORING / "sentinel-xds.rules.yml"
RULE_TESTS = MONITORING / "sentinel-xds.rules.test.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
ON_CALL = ROOT / "docs" / "on-call.md"


def promtool() -> str:
    found = shutil.which("promtool") or str(Path(sys.executable).parent / "promtool")
    assert Path(found).exists(), "no promtool: `bash .ci/setup` puts one in .venv/bin"
    return found


def alerts() -> list[dict[str, object]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def github_anchors(markdown: str) -> set[str]:
    """Anchors GitHub makes from headings: lower case, punctuation dropped, spaces → '-'."""
    out = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def exported_names() -> set[str]:
    """Every sample name a control plane's /metrics shows (with a little state in it)."""
    metrics = Metrics(version="test")
    metrics.add_state(
        lambda: StateSample(
            ready=True,
            sidecars_by_protocol={"sotw": 1},
            groups=[GroupSample("g", "127.0.0.1:7001", "ok", 3, 3, promotable=1)],
            sentinels=[SentinelSample("127.0.0.1:26379", True)],
            sidecar_states={("Cluster", "SYNCED"): 1},
        )
    )
    metrics.acked("type.googleapis.com/envoy.config.cluster.v3.Cluster", 0.01)
    metrics.failover_completed("drain", {"detect_to_switch": 20.0})
    names = set()
    for family in text_string_to_metric_families(metrics.render().decode()):
        names.update(sample.name for sample in family.samples)
    return names


def queried_names(expressions: list[str]) -> set[str]:
    found = set()
    for expr in expressions:
        found.update(re.findall(r"\b((?:sentinel_xds|process)_[a-z_]+)\b", expr))
    return found


def dashboard_expressions() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dash["panels"] for t in panel.get("targets", [])]
    exprs += [a["expr"] for a in dash["annotations"]["list"] if "expr" in a]
    return exprs


def test_promtool_checks_the_rules() -> None:
    """``promtool check rules`` accepts the file."""
    out = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_unit_tests_pass_and_cover_every_alert() -> None:
    """``promtool test rules`` passes, and its tests name every alert in the rules."""
    out = subprocess.run(
        [promtool(), "test", "rules", RULE_TESTS.name],
        cwd=MONITORING,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert tested == {rule["alert"] for rule in alerts()}


def test_every_alert_has_labels_and_a_runbook_anchor_that_exists() -> None:
    """severity and team on every alert; its runbook_url's anchor is a heading of on-call.md."""
    anchors = github_anchors(ON_CALL.read_text())
    for rule in alerts():
        labels = rule["labels"]
        assert isinstance(labels, dict)
        assert labels.get("severity") in {"critical", "warning", "info"}, rule["alert"]
        assert labels.get("team"), rule["alert"]
        url = rule["annotations"]["runbook_url"]  # type: ignore[index]
        page, _, anchor = url.partition("#")
        assert page == "docs/on-call.md" and anchor in anchors, (rule["alert"], url)


def test_rules_and_dashboard_use_only_exported_metrics() -> None:
    """Every metric name in an alert or a dashboard query is on /metrics."""
    exported = exported_names()
    rules = [str(rule["expr"]) for rule in alerts()]
    used = queried_names(rules) | queried_names(dashboard_expressions())
    assert used, "no metric found in the rules: the regex is broken"
    missing = sorted(name for name in used if name not in exported)
    assert missing == []


def test_the_metric_check_can_fail() -> None:
    """A made-up metric in a query is reported as missing."""
    assert "sentinel_xds_made_up" not in exported_names()
    assert queried_names(["rate(sentinel_xds_made_up_total[5m])"]) == {"sentinel_xds_made_up_total"}
