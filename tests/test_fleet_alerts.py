"""docs/fleet-alerts.yml (issue 15 item 5): the alert rules a fleet loads.

Three checks: the rules name only metrics, labels and label values the service really exports
(read from a live registry's exposition, parsed with prometheus_client's parser); ``promtool
check rules`` accepts the file; and ``promtool test rules`` shows each alert firing on the series
it is meant for and staying quiet on a healthy kiosk.  promtool comes from Debian's
``prometheus`` package (run.sh installs it); without it the promtool tests skip on a developer's
machine and fail under CI, where it must be there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from sscard.errors import ERROR_TABLE, CardRemoved
from sscard.service.metrics import Metrics

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "docs" / "fleet-alerts.yml"
SERVICE_SRC = ROOT / "src" / "sscard" / "service"
#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance", "le"}
PROMQL_WORDS = {"sum", "by", "rate", "increase", "and", "on", "min", "histogram_quantile", "up"}


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def _exported() -> dict[str, set[str]]:
    """Every sample name the service exports → its label names (each labelled metric used once)."""
    metrics = Metrics()
    metrics.started("read", False)
    metrics.finished("read", False, 0.1, None, CardRemoved("test"))
    metrics.finished("verify", True, 0.1, None, None)
    metrics.refused("origin")
    metrics.native_call("iReadCardBas", 0)
    metrics.queued(0.01)
    metrics.serial_up.labels("qr").set(1)
    metrics.pin.labels("verify", "verified").inc()
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def _refusal_reasons() -> set[str]:
    """The reasons the service refuses with: the literals of every ``refused("…", …)`` call."""
    reasons: set[str] = set()
    for path in SERVICE_SRC.glob("*.py"):
        reasons |= set(re.findall(r'refused\(\s*"([^"]+)"', path.read_text(encoding="utf-8")))
        reasons |= set(re.findall(r'return "([a-z-]+)", (?:Unauthorized|OriginRefused)', path.read_text("utf-8")))
    return reasons


def test_the_rules_name_only_what_the_service_exports() -> None:
    exported = _exported()
    reasons = _refusal_reasons()
    assert {"origin", "host", "token", "busy", "remote", "sec-fetch-site"} <= reasons
    rules = _rules()
    assert len(rules) >= 10
    for rule in rules:
        expr = rule["expr"]
        name = rule.get("alert") or rule.get("record")
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), name
        assert expr.count("[") == expr.count("]"), name
        for metric, selector in re.findall(r"\b(sscard_[a-z_]+)(\{[^}]*\})?", expr):
            assert metric in exported, f"{name}: {metric} is not a metric the service exports"
            for label, _op, wanted in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', selector):
                assert label in exported[metric] | TARGET_LABELS, f"{name}: {metric} has no label {label}"
                values = set(wanted.split("|"))
                if label == "outcome":
                    assert values <= set(ERROR_TABLE) | {"ok"}, f"{name}: {values - set(ERROR_TABLE) - {'ok'}}"
                if label == "reason":
                    assert values <= reasons, f"{name}: not a refusal reason: {values - reasons}"
                if label == "operation":
                    assert values <= {"read", "verify", "sign_in", "read_photo", "pin_status", "change_pin"}
        for label in re.findall(r"by \(([^)]*)\)", expr) + re.findall(r"on \(([^)]*)\)", expr):
            assert {part.strip() for part in label.split(",")} <= TARGET_LABELS | {"operation", "outcome"}
        words = set(re.findall(r"\b([a-z_]+)\s*\(", expr))
        assert words <= PROMQL_WORDS, f"{name}: unexpected functions {words - PROMQL_WORDS}"
        if "alert" in rule:
            assert re.fullmatch(r"Sscard[A-Z][A-Za-z]+", rule["alert"])
            assert rule["labels"]["severity"] in ("critical", "warning")
            assert "for" not in rule or re.fullmatch(r"\d+[smh]", rule["for"])
            for key in ("summary", "description"):
                text = rule["annotations"][key]
                assert re.search(r"[\u4e00-\u9fff]", text) and re.search(r"[A-Za-z]{4,}", text), f"{name} {key}"
        else:
            assert re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", rule["record"])


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing under CI: run.sh installs Debian's prometheus package")
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    return found


def test_promtool_accepts_the_rules() -> None:
    result = subprocess.run([_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


KIOSK = 'job="sscard", instance="kiosk-1"'

#: (alert, input series, the minute it must fire at, the minute it must not have fired yet).
CASES: list[tuple[str, dict[str, str], int, int]] = [
    ("SscardDown", {f"up{{{KIOSK}}}": "1 0x20"}, 7, 4),
    ("SscardPcscdDown", {f"sscard_pcscd_up{{{KIOSK}}}": "1 1 0x20"}, 5, 3),
    (
        "SscardReaderMissing",
        {f"sscard_pcscd_up{{{KIOSK}}}": "1x20", f"sscard_reader_up{{{KIOSK}}}": "1 0x20"},
        7,
        4,
    ),
    ("SscardSerialDeviceDown", {f'sscard_serial_device_up{{{KIOSK}, device="qr"}}': "1 0x30"}, 12, 8),
    (
        "SscardReadFailures",
        {
            f'sscard_card_operations_total{{{KIOSK}, operation="read", outcome="ok"}}': "0+1x60",
            f'sscard_card_operations_total{{{KIOSK}, operation="read", outcome="TRANSPORT_ERROR"}}': "0+1x60",
        },
        30,
        5,
    ),
    (
        "SscardOperationStuck",
        {
            f"sscard_card_operations_in_progress{{{KIOSK}}}": "0 0 1x30",
            f'sscard_card_operation_seconds_count{{{KIOSK}, operation="read"}}': "3 4 5x30",
        },
        15,
        6,
    ),
    ("SscardReaderBusy", {f'sscard_request_refusals_total{{{KIOSK}, reason="busy"}}': "0x5 0+2x20"}, 10, 5),
    ("SscardRequestsRefused", {f'sscard_request_refusals_total{{{KIOSK}, reason="origin"}}': "0x5 0+5x20"}, 12, 5),
    ("SscardPcscdFlapping", {f"sscard_pcscd_reconnects_total{{{KIOSK}}}": "0x5 1 2 3 4 5x30"}, 12, 7),
    (
        "SscardSlowReads",
        {
            f'sscard_card_operation_seconds_bucket{{{KIOSK}, operation="read", le="2.5"}}': "0x60",
            f'sscard_card_operation_seconds_bucket{{{KIOSK}, operation="read", le="10.0"}}': "0+2x60",
            f'sscard_card_operation_seconds_bucket{{{KIOSK}, operation="read", le="+Inf"}}': "0+2x60",
        },
        35,
        10,
    ),
]

#: A kiosk whose residents forget, pull and mix up cards all day: no alert may fire.
HEALTHY = {
    f"up{{{KIOSK}}}": "1x60",
    f"sscard_pcscd_up{{{KIOSK}}}": "1x60",
    f"sscard_reader_up{{{KIOSK}}}": "1x60",
    f'sscard_serial_device_up{{{KIOSK}, device="qr"}}': "1x60",
    f"sscard_card_operations_in_progress{{{KIOSK}}}": "0 1 0 1 0 1 0 1 0x60",
    f'sscard_card_operation_seconds_count{{{KIOSK}, operation="read"}}': "0+2x60",
    f'sscard_card_operations_total{{{KIOSK}, operation="read", outcome="ok"}}': "0+1x60",
    f'sscard_card_operations_total{{{KIOSK}, operation="read", outcome="NO_CARD"}}': "0+1x60",
    f'sscard_card_operations_total{{{KIOSK}, operation="read", outcome="CARD_REMOVED"}}': "0+1x60",
    f'sscard_card_operations_total{{{KIOSK}, operation="read", outcome="NOT_SSC"}}': "0+1x60",
    f'sscard_request_refusals_total{{{KIOSK}, reason="busy"}}': "0x30 1x30",
    f'sscard_request_refusals_total{{{KIOSK}, reason="origin"}}': "0x20 3x40",
    f"sscard_pcscd_reconnects_total{{{KIOSK}}}": "0x30 1x30",
    f'sscard_card_operation_seconds_bucket{{{KIOSK}, operation="read", le="0.5"}}': "0+2x60",
    f'sscard_card_operation_seconds_bucket{{{KIOSK}, operation="read", le="+Inf"}}': "0+2x60",
}


def _expected(rule: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    """The alert as promtool renders it: the rule's labels and its annotations' ``$labels`` filled."""

    def fill(text: str) -> str:
        return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], " ".join(text.split()))

    return {
        "exp_labels": {**labels, **rule["labels"]},
        "exp_annotations": {key: fill(value) for key, value in rule["annotations"].items()},
    }


def _series_labels(series: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', series))


def test_each_alert_fires_on_its_series_and_none_on_a_healthy_kiosk(tmp_path: Path) -> None:
    promtool = _promtool()
    rules = {rule["alert"]: rule for rule in _rules() if "alert" in rule}
    assert {case[0] for case in CASES} == set(rules), "every alert has a case"
    tests = []
    for alert, series, fires, quiet in CASES:
        # The alert's labels are its expression's: the first series' own, or only `instance` after sum by.
        first = _series_labels(next(iter(series)))
        labels = {k: v for k, v in first.items() if k in ("job", "instance", "device", "reason")}
        if "sum by (instance" in rules[alert]["expr"]:
            labels = {"instance": first["instance"]}
        tests.append(
            {
                "interval": "1m",
                "input_series": [{"series": name, "values": values} for name, values in series.items()],
                "alert_rule_test": [
                    {"eval_time": f"{quiet}m", "alertname": alert, "exp_alerts": []},
                    {"eval_time": f"{fires}m", "alertname": alert, "exp_alerts": [_expected(rules[alert], labels)]},
                ],
            }
        )
    healthy = [
        {"eval_time": f"{minute}m", "alertname": alert, "exp_alerts": []} for alert in rules for minute in (20, 59)
    ]
    tests.append(
        {
            "interval": "1m",
            "input_series": [{"series": name, "values": values} for name, values in HEALTHY.items()],
            "alert_rule_test": healthy,
        }
    )
    test_file = tmp_path / "fleet_alerts_test.yml"
    test_file.write_text(
        yaml.safe_dump({"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": tests}, allow_unicode=True),
        encoding="utf-8",
    )
    result = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "SUCCESS" in result.stdout
