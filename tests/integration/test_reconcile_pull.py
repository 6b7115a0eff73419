"""``finance reconcile --pull``: the settlement file fetched from the partner's settlement_url, signed."""
import csv

import pytest
from click.testing import CliRunner
from werkzeug.wrappers import Request, Response

from tests.finance_ledger import (
    DEMO_CATALOGUE,
    SECRETS,
    XINGYUN_DAY_LINES,
    publish_demo,
    record_xingyun_day,
    settlement_csv,
    settlement_day,
)
from wallet_market.cli import main
from wallet_market.domain.signing import SignatureError, read_headers, verify

REPLAY_WINDOW_SECONDS = 300


class SettlingPartner:
    """xingyun_cf's settlement endpoint: checks our signature, serves the file of the asked day."""

    def __init__(self, files: dict[str, str], status: int = 200):
        self.files = files
        self.status = status
        self.received: list[dict] = []

    def __call__(self, request: Request) -> Response:
        try:
            partner_id, timestamp, signature = read_headers(request.headers)
            verify(SECRETS["xingyun_cf"], timestamp, signature, request.get_data(), REPLAY_WINDOW_SECONDS)
            signed = True
        except SignatureError:
            partner_id, signed = request.headers.get("X-Partner-Id"), False
        self.received.append({"partner_id": partner_id, "signed": signed, "date": request.args.get("date")})
        if not signed:
            return Response("bad signature", status=401)
        if self.status != 200:
            return Response("try later", status=self.status)
        text = self.files.get(request.args.get("date", ""))
        if text is None:
            return Response("no file for that day", status=404)
        return Response(text, content_type="text/csv")


@pytest.fixture
def run(redis_url, key_prefix):
    env = {
        "WALLET_MARKET_REDIS_URL": redis_url,
        "WALLET_MARKET_KEY_PREFIX": key_prefix,
        "WALLET_MARKET_ENV": "testing",
        "WALLET_MARKET_DEMO_CATALOGUE": str(DEMO_CATALOGUE),
    }
    return lambda *args: CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


@pytest.fixture
def partner_day(app, comps, client, httpserver):
    """The ledger holds xingyun_cf's postbacks of a day; its settlement_url is the test server."""
    version = publish_demo(comps, settlement_urls={"xingyun_cf": httpserver.url_for("/settlement")})
    day = settlement_day()
    record_xingyun_day(comps, client, day, version)
    return day


def _serve(httpserver, partner: SettlingPartner) -> None:
    httpserver.expect_request("/settlement", method="GET").respond_with_handler(partner)


def test_a_pulled_file_is_fetched_signed_for_the_day_and_reconciles(run, partner_day, httpserver):
    partner = SettlingPartner({partner_day.isoformat(): settlement_csv(XINGYUN_DAY_LINES, partner_day)})
    _serve(httpserver, partner)
    result = run("finance", "reconcile", "--partner", "xingyun_cf", "--pull", "--date", partner_day.isoformat())
    assert result.exit_code == 0, result.output
    assert "RECONCILED" in result.output and "pulled from xingyun_cf" in result.output
    assert partner.received == [{"partner_id": "xingyun_cf", "signed": True, "date": partner_day.isoformat()}]


def test_a_pulled_file_with_differences_exits_1(run, partner_day, httpserver, tmp_path):
    billed = [("x-1", "disbursed", 30_000), ("x-2", "disbursed", 37_037), ("x-4", "disbursed", 15_000), ("x-5", "reversed", -14_000)]
    _serve(httpserver, SettlingPartner({partner_day.isoformat(): settlement_csv(billed, partner_day)}))
    report = tmp_path / "report.csv"
    result = run(
        "finance", "reconcile", "--partner", "xingyun_cf", "--pull", "--date", partner_day.isoformat(), "--report", str(report)
    )
    assert result.exit_code == 1, result.output
    rows = {row["event_id"]: row for row in csv.DictReader(report.open(encoding="utf-8", newline=""))}
    # The partner clawed back 140 RMB of x-4's 150: theirs −14,000 − ours −15,000 = +1,000 fen.
    assert (rows["x-5"]["status"], rows["x-5"]["difference_fen"]) == ("amount_mismatch", "1000")
    assert {rows[e]["status"] for e in ("x-1", "x-2", "x-4")} == {"matched"}


def test_a_partner_that_fails_to_hand_over_the_file_exits_2(run, partner_day, httpserver):
    partner = SettlingPartner({}, status=503)
    _serve(httpserver, partner)
    result = run("finance", "reconcile", "--partner", "xingyun_cf", "--pull", "--date", partner_day.isoformat())
    assert result.exit_code == 2
    assert "could not be fetched" in result.output and "http_error" in result.output
    assert partner.received and partner.received[0]["signed"]


def test_a_partner_without_a_settlement_url_exits_2(run, partner_day, httpserver):
    result = run("finance", "reconcile", "--partner", "donghai_bank", "--pull", "--date", partner_day.isoformat())
    assert result.exit_code == 2 and "settlement_url" in result.output
    assert not httpserver.log
