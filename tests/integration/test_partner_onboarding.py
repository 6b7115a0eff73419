"""`wallet-market partners check`: is a newly signed partner ready to publish?"""
from datetime import date

import pytest
from click.testing import CliRunner

from partner_fakes import FakePartner, closed_port_url
from wallet_market.domain.catalogue import Partner
from wallet_market.partners.client import PartnerClient, memory_breaker_storage
from wallet_market.partners.onboarding import check_partner
from tests.catalogue_builders import partner as partner_entry

SECRET = "gamma-onboarding-secret-0123456789"
TODAY = date(2026, 3, 2)


@pytest.fixture
def fake():
    partner = FakePartner("gamma", SECRET)
    yield partner
    partner.close()


def _partner(fake, **over):
    """Gamma as newly signed: not yet whitelisted, its three endpoints on the fake."""
    return Partner.from_dict(partner_entry("gamma", **{"whitelisted": False, **fake.partner_fields(**over)}))


def _client(secret=SECRET):
    return PartnerClient(lambda pid: secret, memory_breaker_storage(), fail_max=1, reset_seconds=60)


def _by_endpoint(report):
    return {check.endpoint: check for check in report.checks}


def test_a_partner_that_answers_correctly_is_ready(fake):
    report = check_partner(_client(), _partner(fake), product_id="gamma_loan", today=TODAY)
    assert report.ready and report.problems == ()
    assert report.notes == ("not whitelisted yet: its products will not be placed",)
    checks = _by_endpoint(report)
    assert set(checks) == {"prescreen", "settlement", "joint_login"}
    assert all(c.reachable and c.answer_valid for c in checks.values())
    assert checks["prescreen"].signature_accepted and checks["settlement"].signature_accepted
    assert checks["joint_login"].signature_accepted is None  # a login page, not a signed API
    assert checks["prescreen"].within_timeout and checks["prescreen"].latency_ms < 300
    # The test pre-screen carries a synthetic hash and the product, and asks about yesterday's file.
    prescreen = fake.prescreens()[0].json()
    assert prescreen["product_id"] == "gamma_loan" and len(prescreen["phone_sha256"]) == 64
    assert [r.query for r in fake.received if r.path == "/settlement"] == [{"date": "2026-03-01"}]


def test_a_wrong_secret_is_reported_as_a_refused_signature(fake):
    report = check_partner(_client(secret="not-the-partners-secret-0000"), _partner(fake), today=TODAY)
    checks = _by_endpoint(report)
    assert not report.ready
    assert checks["prescreen"].status == 401 and checks["prescreen"].signature_accepted is False
    assert checks["settlement"].signature_accepted is False
    assert checks["prescreen"].reachable  # it answered: the problem is the secret, not the network


def test_garbage_slow_and_unreachable_partners_are_not_ready(fake):
    fake.mode = "garbage"
    garbage = _by_endpoint(check_partner(_client(), _partner(fake), today=TODAY))["prescreen"]
    assert garbage.reachable and garbage.signature_accepted and not garbage.answer_valid and not garbage.ready

    fake.mode, fake.delay_seconds = "new", 0.5
    slow = check_partner(_client(), _partner(fake, settlement_url=None, joint_login_url=None), today=TODAY)
    (check,) = slow.checks
    assert check.answer_valid and check.within_timeout is False and not slow.ready
    assert "over the partner's timeout of 300 ms" in check.detail

    unreachable = _partner(fake, prescreen_url=closed_port_url(), settlement_url=None, joint_login_url=None)
    down = check_partner(_client(), unreachable, today=TODAY)
    (check,) = down.checks
    assert not check.reachable and check.status is None and not down.ready


def test_a_missing_secret_or_an_expired_licence_blocks(fake):
    report = check_partner(_client(secret=None), _partner(fake, licence_expires_on="2026-01-31"), today=TODAY)
    assert not report.ready
    assert report.problems == (
        "no signing secret is configured: requests cannot be signed",
        "the licence expired on 2026-01-31",
    )
    assert fake.received == []


@pytest.fixture
def cli_env(demo_app, comps, settings_overrides, monkeypatch):
    env = {f"WALLET_MARKET_{k.upper()}": str(v) for k, v in settings_overrides.items()}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def _put_gamma(comps, fake, **over):
    entity = _partner(fake, **over).to_dict()
    comps.admin.create("partners", {**entity, "signing_secret": SECRET}, actor="test")


def test_the_command_prints_the_table_and_exits_0_only_when_ready(fake, comps, cli_env):
    from wallet_market.cli import main

    _put_gamma(comps, fake)
    ready = CliRunner().invoke(main, ["partners", "check", "gamma"])
    assert ready.exit_code == 0, ready.output
    assert "gamma: READY" in ready.output and "prescreen" in ready.output

    fake.mode = "error"
    not_ready = CliRunner().invoke(main, ["partners", "check", "gamma"])
    assert not_ready.exit_code == 1
    assert "gamma: NOT READY" in not_ready.output and "HTTP 500" in not_ready.output

    unknown = CliRunner().invoke(main, ["partners", "check", "nobody"])
    assert unknown.exit_code == 1 and "does not exist" in unknown.output


def test_the_settlement_command_prints_the_file(fake, comps, cli_env):
    from wallet_market.cli import main

    _put_gamma(comps, fake, whitelisted=True)
    comps.admin.publish("test")
    fake.settlement_files["2026-03-01"] = "event_id,type,amount_fen,date\ngm-1,approved,15000,2026-03-01\n"
    result = CliRunner().invoke(main, ["partners", "settlement", "gamma", "--date", "2026-03-01"])
    assert result.exit_code == 0, result.output
    assert result.output == "event_id,type,amount_fen,date\ngm-1,approved,15000,2026-03-01\n"
