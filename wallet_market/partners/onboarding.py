"""Partner onboarding check: is a newly signed partner's integration ready to go live?

Calls each endpoint the partner configured with a harmless test request and
reports, per endpoint, whether it answered, how fast (against the partner's
``timeout_ms``), the HTTP status, whether our signature was accepted (a 401 or
403 means it was not) and whether the answer has the agreed shape:

- pre-screen: a signed ``POST`` with a synthetic phone hash that matches no
  phone number (the SHA-256 of a random test string), expecting
  ``{"eligible": bool, "existing_customer": bool}``;
- settlement: a signed ``GET ?date=<yesterday>``, expecting a settlement CSV
  :func:`~wallet_market.domain.reconcile.parse_settlement_csv` can read;
- joint login: a ``GET`` of the login page, expecting it to load (2xx or a
  redirect).

No user data is sent, so nothing here goes to the data-share log; the breaker
is bypassed so the check reaches the partner even when pre-screens are failing.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from ..domain.catalogue import Partner
from ..domain.reconcile import SettlementFileError, parse_settlement_csv
from .client import NO_SECRET, OK, BadAnswer, PartnerClient, PartnerResponse, PartnerResult
from .prescreen import read_prescreen_answer

PURPOSE = "onboarding"
MIN_CHECK_TIMEOUT_SECONDS = 5.0
SIGNATURE_REFUSED = (401, 403)


@dataclass(frozen=True, slots=True)
class EndpointCheck:
    """How one endpoint answered the test request."""

    endpoint: str
    url: str
    reachable: bool
    latency_ms: int | None
    status: int | None
    signature_accepted: bool | None  # None: the endpoint is not signed (joint-login page) or never answered
    answer_valid: bool
    within_timeout: bool | None  # None: no latency budget applies
    detail: str = ""

    @property
    def ready(self) -> bool:
        return (
            self.reachable
            and self.signature_accepted is not False
            and self.answer_valid
            and self.within_timeout is not False
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "url": self.url,
            "reachable": self.reachable,
            "latency_ms": self.latency_ms,
            "status": self.status,
            "signature_accepted": self.signature_accepted,
            "answer_valid": self.answer_valid,
            "within_timeout": self.within_timeout,
            "detail": self.detail,
            "ready": self.ready,
        }


@dataclass(frozen=True, slots=True)
class OnboardingReport:
    """The verdict on one partner: ready only when every configured endpoint passed and nothing blocks."""

    partner_id: str
    timeout_ms: int
    checks: tuple[EndpointCheck, ...]
    problems: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def ready(self) -> bool:
        return not self.problems and all(check.ready for check in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "partner_id": self.partner_id,
            "timeout_ms": self.timeout_ms,
            "ready": self.ready,
            "checks": [c.to_dict() for c in self.checks],
            "problems": list(self.problems),
            "notes": list(self.notes),
        }


def read_settlement_file(response: PartnerResponse) -> int:
    """The number of lines of a readable settlement file; :class:`BadAnswer` otherwise."""
    try:
        return len(parse_settlement_csv(response.text()))
    except SettlementFileError as exc:
        raise BadAnswer(str(exc)) from None


def _endpoint_check(
    endpoint: str, url: str, result: PartnerResult, signed: bool, timeout_ms: int | None
) -> EndpointCheck:
    answered = result.status is not None
    latency_ms = round(result.elapsed_seconds * 1000) if result.sent else None
    if signed and answered:
        signature_accepted: bool | None = result.status not in SIGNATURE_REFUSED
    else:
        signature_accepted = None
    if result.outcome == NO_SECRET:
        signature_accepted = False
    within = None
    if timeout_ms is not None and latency_ms is not None and answered:
        within = latency_ms <= timeout_ms
    detail = result.detail
    if result.outcome == OK:
        detail = ""
        if within is False:
            detail = f"answered in {latency_ms} ms, over the partner's timeout of {timeout_ms} ms"
    return EndpointCheck(
        endpoint=endpoint,
        url=url,
        reachable=answered,
        latency_ms=latency_ms,
        status=result.status,
        signature_accepted=signature_accepted,
        answer_valid=result.outcome == OK,
        within_timeout=within,
        detail=detail,
    )


def check_partner(
    client: PartnerClient,
    partner: Partner,
    *,
    product_id: str | None = None,
    today: date | None = None,
    timeout_seconds: float | None = None,
) -> OnboardingReport:
    """Call every endpoint ``partner`` configured and say whether it is ready.

    ``timeout_seconds`` is how long the check waits for each answer (by
    default the longer of 5 s and three times the partner's ``timeout_ms``,
    so a slow partner is reported as slow rather than as unreachable).
    """
    today = today or date.today()
    wait = timeout_seconds or max(MIN_CHECK_TIMEOUT_SECONDS, 3 * partner.timeout_ms / 1000)
    problems: list[str] = []
    notes: list[str] = []
    if not client.secrets(partner.partner_id):
        problems.append("no signing secret is configured: requests cannot be signed")
    if partner.licence_expires_on < today:
        problems.append(f"the licence expired on {partner.licence_expires_on.isoformat()}")
    if not partner.whitelisted:
        notes.append("not whitelisted yet: its products will not be placed")
    if partner.status != "active":
        notes.append(f"status is {partner.status!r}: its products will not be placed")
    if not (partner.prescreen_url or partner.joint_login_url or partner.settlement_url):
        problems.append("no endpoint is configured")

    checks: list[EndpointCheck] = []
    if partner.prescreen_url:
        test_hash = hashlib.sha256(b"wallet-market onboarding check " + os.urandom(16)).hexdigest()
        prescreen = client.call(
            partner,
            PURPOSE,
            "POST",
            partner.prescreen_url,
            payload={
                "request_id": f"onboarding-{os.urandom(8).hex()}",
                "product_id": product_id or "onboarding-check",
                "phone_sha256": test_hash,
            },
            read=read_prescreen_answer,
            timeout_seconds=wait,
            use_breaker=False,
        )
        checks.append(_endpoint_check("prescreen", partner.prescreen_url, prescreen, True, partner.timeout_ms))
    if partner.settlement_url:
        settlement = client.call(
            partner,
            PURPOSE,
            "GET",
            partner.settlement_url,
            params={"date": (today - timedelta(days=1)).isoformat()},
            read=read_settlement_file,
            timeout_seconds=max(wait, 30.0),
            max_bytes=50 * 1024 * 1024,
            use_breaker=False,
        )
        checks.append(_endpoint_check("settlement", partner.settlement_url, settlement, True, None))
    if partner.joint_login_url:
        joint_login: PartnerResult[PartnerResponse] = client.call(
            partner,
            PURPOSE,
            "GET",
            partner.joint_login_url,
            timeout_seconds=wait,
            max_bytes=2 * 1024 * 1024,
            use_breaker=False,
            accept_status=lambda status: status < 400,
        )
        checks.append(_endpoint_check("joint_login", partner.joint_login_url, joint_login, False, None))
    return OnboardingReport(
        partner_id=partner.partner_id,
        timeout_ms=partner.timeout_ms,
        checks=tuple(checks),
        problems=tuple(problems),
        notes=tuple(notes),
    )

