"""Property-based tests of every operation from the OpenAPI document (schemathesis, in process over WSGI).

Every operation is called with generated requests — valid ones and invalid
ones — by a caller with a real API key of the role it needs (and partners'
calls signed with a real partner secret), and every answer is checked: never
a 5xx, and always what the document says (status code, content type, headers,
body schema). Bounded and derandomized, so the run is the same each time.
"""
from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from partner_fakes import XINGYUN_SECRET, configure_partner
from wallet_market.domain.signing import signed_headers

SIGNED_PATHS = ("/partner/v1/postbacks", "/partner/v1/joint-login/exchange")

# Operations whose valid-looking requests may still break a business rule the document cannot
# express — a guard of the catalogue, a reference to something that does not exist, an
# impression token that is not genuine, an earlier `to` than `from` — and are then refused
# with a 422 naming the field. Writes to a catalogue entity also take an `If-Match` header:
# a generated tag that is not the entity's current ETag is refused with a 412, as it should be.
# Everywhere else a schema-valid request must be accepted.
CONFIG = """
[[operations]]
include-path-regex = "^/admin/v1/(partners|products|pages|rules)/"
include-method-regex = "^(PUT|PATCH|DELETE)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "412", "422", "429"]

[[operations]]
include-path-regex = "^/admin/v1/(partners|products|pages|rules|rulesets/publish|rulesets/rollback)"
include-method-regex = "^(POST|PUT)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]

[[operations]]
include-path-regex = "^/(partner/v1/postbacks|v1/events|finance/v1/revenue|finance/v1/compare|admin/v1/preview)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]
"""


def role_for(path: str) -> str | None:
    """The role whose key a generated request to ``path`` carries (None: a partner's signed call)."""
    if path in SIGNED_PATHS:
        return None
    if path.startswith("/admin/"):
        return "pm"
    if path.startswith("/finance/"):
        return "finance"
    if path.startswith("/v1/users") or path == "/metrics":
        return "internal"
    return "app"


@pytest.fixture
def api_schema(demo_app, client, auth, comps):
    configure_partner(client, auth, comps, "xingyun_cf", signing_secret=XINGYUN_SECRET)
    return schemathesis.openapi.from_wsgi("/openapi.json", demo_app, config=schemathesis.Config.from_str(CONFIG))


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_within_its_contract(case, auth, comps):
    path = case.operation.path
    role = role_for(path)
    if role is not None:
        case.call_and_validate(headers=auth(role))
        return
    sent = case.as_transport_kwargs()  # the body as schemathesis would send it, signed as it is sent
    raw = sent["data"] if "data" in sent else json.dumps(sent["json"]).encode() if "json" in sent else b""
    raw = raw.encode() if isinstance(raw, str) else raw
    headers = {**signed_headers("xingyun_cf", XINGYUN_SECRET, raw), "Content-Type": "application/json"}
    case.call_and_validate(headers=headers, data=raw)
