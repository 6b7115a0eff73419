"""The analysis log and off-policy evaluation on the real paths: layouts, events, postbacks, the worker's export,
Parquet files read by DuckDB, and ``POST /admin/v1/rulesets/evaluate`` / ``wallet-market rules evaluate``."""
import json
import time
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from tests.evidence_log import evaluation_settings, log_decisions
from wallet_market.services.analysis import decision_rows, logged_decisions


@pytest.fixture
def settings_overrides(settings_overrides, tmp_path):
    return {**settings_overrides, **evaluation_settings(tmp_path)}


@pytest.fixture
def logged(app, client, comps, api_keys):
    """40 home pages of 4 users with exploration, every impression reported, a card approved, a loan lent and
    reversed; exported by the worker."""
    return log_decisions(comps, client, api_keys["app"])


def test_the_worker_exports_decisions_and_outcomes_as_parquet_by_day(logged, comps):
    root = Path(comps.settings.analysis_dir)
    day = time.strftime("%Y-%m-%d", time.gmtime())
    decisions = sorted((root / "decisions" / f"day={day}").glob("part-*.parquet"))
    outcomes = sorted((root / "outcomes" / f"day={day}").glob("part-*.parquet"))
    assert decisions and outcomes
    table = pq.read_table(decisions[0])
    assert {"decision_id", "unit", "risk_tier", "age_band", "consents", "prescreen", "device_model", "experiment_id",
            "arm", "slot_id", "product_id", "probability", "distribution"} <= set(table.column_names)
    # Pseudonymous: no user id, nor anything but the unit's keyed pseudonym.
    assert "person-0" not in repr(table.to_pylist())
    assert set(table.column("unit").to_pylist()) <= {comps.pseudonyms.of_user(f"person-{n}") for n in range(4)}
    assert comps.redis.xlen(comps.keys.event_stream()) > 0  # the ledger's trim keeps what the export has not taken


def test_outcomes_join_their_decision_at_read_time_and_a_reversal_takes_its_event_out(logged, comps):
    rows = logged_decisions(comps.analysis_files, None, None)
    assert len(rows) == 40
    first = next(r for r in rows if r.record["decision_id"] == logged["chosen"]["decision_id"])
    earned = {s.slot_id: (s.platform_micro_fen, s.group_micro_fen) for s in first.slots}
    # The card's 150 RMB approval counts; the loan's disbursal was reversed, so it earns nothing.
    assert earned[logged["card"]["slot"]] == (15_000 * 1_000_000, 15_000 * 1_000_000)
    assert earned[logged["loan"]["slot"]] == (0, 0)
    for row in rows:
        for slot in row.slots:
            assert sum(slot.distribution.values()) == pytest.approx(1.0)
            assert slot.distribution[slot.product_id] == slot.probability
    # The same entries exported again under another name (a crash before the acknowledgement) change no answer.
    for entry_id, fields in comps.redis.xrange(comps.keys.decisions()):
        records = orjson.loads(fields[b"d"])
        rows_again = [row for record in records for row in decision_rows(record)]
        comps.analysis_files.write("decisions", records[0]["day"], f"again-{entry_id.decode()}", rows_again)
    again = logged_decisions(comps.analysis_files, None, None)
    assert [(r.record["decision_id"], r.slots) for r in again] == [(r.record["decision_id"], r.slots) for r in rows]


def test_evaluating_the_published_version_gives_back_what_it_earned(logged, client, auth, comps):
    response = client.post("/admin/v1/rulesets/evaluate", json={"candidate": "1"}, headers=auth("pm"))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["candidate"] == "1" and body["decisions"] == 40 and body["view"] == "group"
    assert set(body["estimators"]) == {"ips", "snips", "dm", "dr"}
    # The same policy: every weight is 1, so IPS and SNIPS are what the log earned.
    assert body["estimators"]["ips"]["rpm_fen"] == body["logged"]["rpm_fen"]
    assert body["estimators"]["snips"]["rpm_fen"] == body["logged"]["rpm_fen"]
    assert body["support_bps"] == 10_000
    assert body["effective_sample_size"] == pytest.approx(sum(len(b["slots"]) for b in logged["bodies"]))
    # The draft with cps_loan excluded: it never shows, so its revenue is counted out.
    assert client.post("/admin/v1/rules", headers=auth("pm"), json={
        "rule_id": "no_cps", "action": "exclude", "product_id": "cps_loan", "priority": 1}).status_code == 201
    draft = client.post("/admin/v1/rulesets/evaluate", json={"candidate": "draft", "view": "platform"},
                        headers=auth("pm")).get_json()
    assert draft["candidate"] == "draft" and draft["view"] == "platform"
    assert draft["support_bps"] < 10_000
    day = time.strftime("%Y-%m-%d", time.gmtime())
    windowed = client.post("/admin/v1/rulesets/evaluate", json={"candidate": "1", "from": day, "to": day},
                           headers=auth("pm")).get_json()
    assert windowed["decisions"] == 40
    earlier = client.post("/admin/v1/rulesets/evaluate", json={"candidate": "1", "from": "2020-01-01", "to": "2020-01-02"},
                          headers=auth("pm")).get_json()
    assert earlier["decisions"] == 0 and earlier["warnings"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"candidate": "latest"}, "candidate"),
        ({"candidate": "99"}, "candidate"),
        ({"candidate": "1", "view": "mine"}, "view"),
        ({"candidate": "1", "from": "2026-02-02", "to": "2026-02-01"}, "to"),
        ({}, "candidate"),
    ],
)
def test_a_bad_evaluation_request_is_a_4xx_naming_the_field(logged, client, auth, body, field):
    response = client.post("/admin/v1/rulesets/evaluate", json=body, headers=auth("pm"))
    assert 400 <= response.status_code < 500, response.get_json()
    errors = response.get_json()["errors"]
    assert field in errors or field in errors.get("json", {}), errors
    assert client.post("/admin/v1/rulesets/evaluate", json={"candidate": "1"}, headers=auth("app")).status_code == 403


def test_the_command_line_gives_the_same_evaluation(logged, client, auth, cli_env, comps):
    from click.testing import CliRunner

    from wallet_market.cli import main

    env = {**cli_env, "WALLET_MARKET_ANALYSIS_DIR": comps.settings.analysis_dir, "WALLET_MARKET_EXPLORATION_BPS": "2000"}
    comps.learning.refresh()  # the command starts with what has been learned so far: so does the app now
    over_http = client.post("/admin/v1/rulesets/evaluate", json={"candidate": "1"}, headers=auth("pm")).get_json()
    result = CliRunner().invoke(main, ["rules", "evaluate", "--candidate", "1", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == over_http
    table = CliRunner().invoke(main, ["rules", "evaluate", "--candidate", "1"], env=env)
    assert table.exit_code == 0 and "dr" in table.output and "effective sample size" in table.output
    bad = CliRunner().invoke(main, ["rules", "evaluate", "--candidate", "newest"], env=env)
    assert bad.exit_code == 2 and "draft or a rule-set version" in bad.output
