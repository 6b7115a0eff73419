"""Partner lenders played by real HTTP servers on loopback, for the partner gateway's tests.

A :class:`FakePartner` answers pre-screens, settlement pulls and joint-login
page loads the way a real partner would — or slowly, with errors, with
garbage, or not at all — checks our signatures with its secret, and keeps
every request it received so tests can assert what reached the partner.
"""
from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from wallet_market.domain.signing import SignatureError, read_headers, verify

# The number the user signed up with. The service is only ever given its hash.
TEST_PHONE = "13800138000"
PRESCREEN_MODES = ("new", "existing", "ineligible", "error", "garbage", "wrong_shape", "silent", "trickle")


def phone_hash(phone: str) -> str:
    """What the account system stores for a phone number: its lowercase hex SHA-256."""
    return hashlib.sha256(phone.encode()).hexdigest()


@dataclass
class Received:
    """One request as the partner received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    signature_ok: bool
    at: float = field(default_factory=time.time)

    def json(self) -> Any:
        return json.loads(self.body)

    def raw(self) -> str:
        """Everything that arrived, as text: path, query, headers and body."""
        body = self.body.decode("utf-8", "replace")
        return " ".join([self.method, self.path, json.dumps(self.query), json.dumps(self.headers), body])


class FakePartner:
    """A partner's servers on 127.0.0.1: ``/prescreen``, ``/settlement``, ``/login``."""

    def __init__(self, partner_id: str, secret: str):
        self.partner_id = partner_id
        self.secret = secret
        self.mode = "new"
        self.delay_seconds = 0.0
        self.existing_hashes: set[str] = set()
        self.settlement_files: dict[str, str] = {}
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        # Pre-screens wait here until it is set (see hold and release); open by default.
        self._gate = threading.Event()
        self._gate.set()
        self.server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    @property
    def prescreen_url(self) -> str:
        return self.base_url + "/prescreen"

    @property
    def settlement_url(self) -> str:
        return self.base_url + "/settlement"

    @property
    def joint_login_url(self) -> str:
        return self.base_url + "/login"

    def partner_fields(self, **changes: Any) -> dict[str, Any]:
        """This partner's endpoints and secret, as a catalogue partner's fields."""
        return {
            "prescreen_url": self.prescreen_url,
            "settlement_url": self.settlement_url,
            "joint_login_url": self.joint_login_url,
            "signing_secret": self.secret,
            **changes,
        }

    def prescreens(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == "/prescreen"]

    def hold(self) -> None:
        """From now on, pre-screen requests hang (unanswered) until :meth:`release`."""
        self._gate.clear()

    def release(self) -> None:
        """Answer the held pre-screens, and every later one at once."""
        self._gate.set()

    def close(self) -> None:
        self._release.set()
        self._gate.set()
        self.server.shutdown()
        self.server.server_close()

    # -- the partner's behaviour ------------------------------------------------
    def _app(self, environ, start_response):
        request = Request(environ)
        body = request.get_data()
        signature_ok = self._signature_ok(request.headers, body)
        received = Received(
            method=request.method,
            path=request.path,
            query=dict(request.args),
            headers=dict(request.headers),
            body=body,
            signature_ok=signature_ok,
        )
        with self._lock:
            self.received.append(received)
        if self.delay_seconds:
            self._release.wait(self.delay_seconds)
        if request.path == "/prescreen":
            response = self._prescreen(received)
        elif request.path == "/settlement":
            response = self._settlement(received)
        elif request.path == "/login":
            response = Response("<html><body>log in</body></html>", mimetype="text/html")
        else:
            response = Response("not found", status=404)
        response.set_cookie("partner_session", f"visitor-{len(self.received)}")  # as many partners' servers do
        return response(environ, start_response)

    def _signature_ok(self, headers, body: bytes) -> bool:
        try:
            partner_id, timestamp, signature = read_headers(headers)
            verify(self.secret, timestamp, signature, body, window_seconds=300)
        except SignatureError:
            return False
        return partner_id == self.partner_id

    def _prescreen(self, received: Received) -> Response:
        self._gate.wait(30)
        if not received.signature_ok:
            return Response('{"error": "bad signature"}', status=401, mimetype="application/json")
        mode = self.mode
        if mode == "silent":
            self._release.wait(30)
            return Response("", status=504)
        if mode == "error":
            return Response('{"error": "internal"}', status=500, mimetype="application/json")
        if mode == "garbage":
            return Response("<html>Service Unavailable</html>", status=200, mimetype="text/html")
        if mode == "wrong_shape":
            return _json({"eligible": "yes", "existing": 0})
        if mode == "trickle":
            return Response(self._trickle(), mimetype="application/json", direct_passthrough=True)
        phone = received.json().get("phone_sha256")
        existing = mode == "existing" or phone in self.existing_hashes
        return _json({"eligible": mode != "ineligible", "existing_customer": existing})

    def _trickle(self):
        """A valid answer, one byte every 50 ms: headers come at once, the body takes seconds."""
        for byte in b'{"eligible": true, "existing_customer": false}':
            if self._release.wait(0.05):
                return
            yield bytes([byte])

    def _settlement(self, received: Received) -> Response:
        if not received.signature_ok:
            return Response("bad signature", status=401)
        if self.mode == "error":
            return Response("internal", status=500)
        day = received.query.get("date", "")
        text = self.settlement_files.get(day, "event_id,type,amount_fen,date\n")
        return Response(text, mimetype="text/csv")


def _json(value: Any) -> Response:
    return Response(json.dumps(value), mimetype="application/json")


def closed_port_url(path: str = "/prescreen") -> str:
    """A loopback URL nobody listens on: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


# -- the service side of partner tests ------------------------------------------------
DEMO_PARTNERS = ["beichen_bank", "donghai_bank", "haoyue_mcl", "nanfeng_bank", "qingshan_bank", "xingyun_cf"]
# The signing secrets tests give the two demo partners that sign their calls.
XINGYUN_SECRET = "xingyun-signing-secret-0123456789"
HAOYUE_SECRET = "haoyue-signing-secret-0123456789"


def configure_partner(client, auth, comps, partner_id: str, **fields: Any) -> None:
    """Change a demo partner through the admin API, publish, and serve the new version."""
    current = client.get(f"/admin/v1/partners/{partner_id}", headers=auth("pm")).get_json()
    response = client.put(f"/admin/v1/partners/{partner_id}", json={**current, **fields}, headers=auth("pm"))
    assert response.status_code == 200, response.get_json()
    # 200: the change was already served (the draft equals the current version).
    assert client.post("/admin/v1/rulesets/publish", json={}, headers=auth("pm")).status_code in (200, 201)
    comps.snapshots.refresh()


def put_user(client, auth, user_id: str, share_with=tuple(DEMO_PARTNERS), **changes: Any) -> None:
    """Push a prime user's profile (tier A, 31, Guangdong, phone hash) as the internal systems would."""
    profile = {
        "risk_tier": "A",
        "in_house_decision": {"status": "approved", "decided_at": "2026-01-10"},
        "consents": {"personalized": True, "share_with_partners": list(share_with)},
        "age": 31,
        "region": "guangdong",
        "phone_sha256": phone_hash(TEST_PHONE),
    }
    profile.update(changes)
    response = client.put(f"/v1/users/{user_id}", json=profile, headers=auth("internal"))
    assert response.status_code == 200, response.get_json()
