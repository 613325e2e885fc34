"""deploy/: the Prometheus alert rules and the Grafana dashboard parse (PromQL checked by
`promql-parser`), name only metrics Nudge exports, and cover what operators are paged for."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from engine.observability.metrics import REGISTRY

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NAME = re.compile(r"\bnudge_[a-z_]+\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported() -> set[str]:
    """Every series name Nudge's registry exposes (counters as `_total`, histograms as
    `_bucket`/`_sum`/`_count`), whether or not a child was made yet."""
    names = set()
    for family in REGISTRY.collect():
        for suffix in SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def check(expr: str) -> set[str]:
    """Parse `expr` as PromQL (Grafana's variables filled in); the Nudge metrics it names."""
    promql_parser.parse(expr.replace("$__rate_interval", "5m").replace("$journey", ".*"))
    return set(NAME.findall(expr))


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_alert_rules_parse_and_use_exported_metrics() -> None:
    known = exported()
    names = set()
    for rule in rules():
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert check(rule["expr"]) <= known, rule["alert"]
        names.add(rule["alert"])
    # What operators are paged for (the list).
    assert {
        "NudgeRoutingLagHigh",
        "NudgeRouterBacklog",
        "NudgeSendFailures",
        "NudgeProviderLatencyHigh",
        "NudgeDeactivationsSpike",
        "NudgeSmscBindDown",
    } <= names


def test_a_broken_expression_is_caught() -> None:
    with pytest.raises(ValueError):
        check("rate(nudge_sends_total[5m]")
    assert not check("sum(rate(nudge_nope_total[5m]))") <= exported()


def test_dashboard_panels_query_exported_metrics_per_journey() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "nudge.json").read_text())
    known = exported()
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    used = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found = check(target["expr"])
            assert found <= known, (panel["title"], found - known)
            used |= found
    assert {
        "nudge_journey_entries_total",
        "nudge_journey_ends_total",
        "nudge_journey_conversions_total",
        "nudge_journey_sends_total",
        "nudge_link_clicks_total",
        "nudge_routing_lag_seconds_bucket",
        "nudge_smpp_bound",
    } <= used
    [journey] = dashboard["templating"]["list"]
    assert check(journey["definition"].removeprefix("label_values(").split(",")[0]) <= known


def test_prometheus_scrapes_nudge_and_loads_the_rules() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {"nudge-api", "nudge-worker"} <= jobs
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
