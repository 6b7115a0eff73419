"""Console sign-in: a signed session cookie naming an API key by its hash, re-checked on every request.

The cookie (Flask's session, signed with a key derived from the service's
secret) holds the key's SHA-256 hash, its role and name, and when the sign-in
expires — never the key itself. Each request re-checks the hash with the key
service, so a key that is removed stops working in the console too. State
changes are POSTs carrying a CSRF token (``csrf_token``); one without a valid
token is refused with 403.
"""
from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from urllib.parse import urlsplit

from flask import abort, g, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface

from ..services.access import Forbidden, Principal, Unauthorized, key_hash
from .wiring import console_services

CONSOLE_ROLES = ("pm", "finance")
HOME = {"pm": "console.catalogue", "finance": "console.revenue"}
ROLE_NAMES = {"pm": "product manager", "finance": "finance"}


@dataclass(frozen=True)
class Viewer:
    """Who is looking at a console page."""

    role: str
    name: str
    key_id: str

    @property
    def actor(self) -> str:
        """The audit log's name for changes made through the console."""
        return f"{self.role}:{self.name}:{self.key_id}"


def session_secret(secret_key: str) -> bytes:
    """The console's cookie-signing key: derived from the service's secret, never the secret itself."""
    return hmac.new(secret_key.encode(), b"wallet_market console session", hashlib.sha256).digest()


class ConsoleSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, opened only under ``/console``: the API's requests pay nothing for them."""

    def open_session(self, app, request):
        if not request.path.startswith(app.config["SESSION_COOKIE_PATH"]):
            return None  # a null session: never read, never saved
        return super().open_session(app, request)


def configure(app, hours: float, production: bool) -> None:
    app.session_interface = ConsoleSessions()
    app.config.update(
        SESSION_COOKIE_NAME="wm_console",
        SESSION_COOKIE_PATH="/console",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=production,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=hours),
        SESSION_REFRESH_EACH_REQUEST=False,
        WTF_CSRF_CHECK_DEFAULT=False,  # only the console's own POSTs are checked, see ``check_csrf``
        WTF_CSRF_FIELD_NAME="csrf_token",
        WTF_CSRF_TIME_LIMIT=None,  # valid as long as the sign-in (the token lives in the session)
    )


def sign_in(api_key: str) -> Viewer:
    """Check ``api_key`` (role pm or finance) and start a session; raises the key service's errors."""
    services = console_services()
    principal = services.access.authenticate(f"Bearer {api_key.strip()}", CONSOLE_ROLES)
    session.clear()  # a fresh session, with a fresh CSRF token
    session.permanent = True
    session["key_hash"] = key_hash(api_key.strip())
    session["role"] = principal.role
    session["name"] = principal.name
    session["expires_at"] = int(time.time() + services.settings.console_session_hours * 3600)
    return Viewer(principal.role, principal.name, principal.key_id)


def sign_out() -> None:
    session.clear()


def current_viewer() -> Viewer | None:
    """The signed-in viewer, or ``None`` (no session, expired, or the key is no longer valid)."""
    if "viewer" in g:
        return g.viewer
    viewer = None
    digest = session.get("key_hash")
    if digest:
        if int(session.get("expires_at") or 0) <= time.time():
            session.clear()
            g.session_expired = True
        else:
            try:
                principal: Principal = console_services().access.recheck(digest, CONSOLE_ROLES)
            except (Unauthorized, Forbidden):
                session.clear()
            else:
                viewer = Viewer(principal.role, principal.name, principal.key_id)
    g.viewer = viewer
    return viewer


def actor() -> str:
    """The audit log's name of the signed-in viewer (for views behind :func:`requires`)."""
    viewer = current_viewer()
    assert viewer is not None
    return viewer.actor


def requires(role: str):
    """Only a viewer of ``role``: others signed in get 403, visitors go to the sign-in page."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            viewer = current_viewer()
            if viewer is None:
                expired = 1 if g.get("session_expired") else None
                return redirect(url_for("console.login", next=request.full_path.rstrip("?"), expired=expired), 303)
            if viewer.role != role:
                abort(403, f"This page is for {ROLE_NAMES[role]}s; you are signed in as {ROLE_NAMES[viewer.role]}.")
            return view(*args, **kwargs)

        wrapper.console_role = role
        return wrapper

    return decorate


def safe_next(target: str | None, role: str) -> str:
    """Where to go after signing in: a console path only (no open redirect), else the role's home."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and parts.path.startswith("/console/") and "\\" not in target:
            return target
    return url_for(HOME[role])
