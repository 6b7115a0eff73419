"""Console sign-in: cookie flags, expiry, CSRF refusal, role separation, keys re-checked on every request."""
from __future__ import annotations

import time
from http.cookies import SimpleCookie

import pytest

from tests.conftest import TEST_SECRET
from tests.console.conftest import Console, csrf_of
from tests.evidence_log import start_pin_experiment
from wallet_market.store.access import key_hash

SAMPLE_EXPERIMENT = "pin-card"  # the experiment the pages of one experiment are shown with


def _set_cookie(response) -> SimpleCookie:
    cookie = SimpleCookie()
    for header in response.headers.getlist("Set-Cookie"):
        cookie.load(header)
    return cookie


def _cookie_header(response) -> str:
    return next(h for h in response.headers.getlist("Set-Cookie") if h.startswith("wm_console="))


def test_sign_in_sets_a_signed_http_only_same_site_cookie_without_the_key(demo_app, api_keys):
    console = Console(demo_app.test_client())
    console.get("/console/login")
    response = console.post("/console/login", {"api_key": api_keys["pm"]})
    assert response.status_code == 303 and response.headers["Location"] == "/console/catalogue/"
    header = _cookie_header(response)
    morsel = _set_cookie(response)["wm_console"]
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Lax"
    assert morsel["path"] == "/console"
    assert not morsel["secure"]  # testing runs over plain HTTP
    assert morsel["expires"]  # a lasting cookie, ended by the sign-in's expiry
    assert api_keys["pm"] not in header
    with console.client.session_transaction("/console/") as session:
        assert session["key_hash"] == key_hash(api_keys["pm"]) and session["role"] == "pm"
        assert "api_key" not in session
        # expires after the configured 8 hours
        assert abs(session["expires_at"] - (time.time() + 8 * 3600)) < 60


def test_the_cookie_is_secure_in_production(settings_overrides):
    from wallet_market.app import create_app

    app = create_app({**settings_overrides, "env": "production", "secret_key": TEST_SECRET}, start_background=False)
    try:
        comps = app.extensions["wallet_market"]
        key = comps.api_keys.create("finance", name="prod-finance")
        console = Console(app.test_client())
        console.get("/console/login")
        response = console.post("/console/login", {"api_key": key})
        assert response.status_code == 303
        assert _set_cookie(response)["wm_console"]["secure"] is True
    finally:
        app.extensions["wallet_market"].close()


def test_the_session_lasts_as_configured(settings_overrides):
    from wallet_market.app import create_app

    app = create_app({**settings_overrides, "console_session_hours": 0.5}, start_background=False)
    try:
        key = app.extensions["wallet_market"].api_keys.create("pm", name="short")
        console = Console(app.test_client())
        console.sign_in(key)
        with console.client.session_transaction("/console/") as session:
            assert abs(session["expires_at"] - (time.time() + 1800)) < 60
    finally:
        app.extensions["wallet_market"].close()


def test_an_expired_session_goes_back_to_sign_in(pm):
    with pm.client.session_transaction("/console/") as session:
        session["expires_at"] = int(time.time()) - 1
    response = pm.client.get("/console/catalogue/products")
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/console/login?")
    assert "expired=1" in response.headers["Location"]
    assert "Your session expired" in pm.client.get(response.headers["Location"]).get_data(as_text=True)
    # and the session is gone: the next page is refused too, even with the old expiry fixed
    assert pm.client.get("/console/draft").status_code == 303


def test_a_forged_cookie_is_not_a_session(demo_app, api_keys):
    client = demo_app.test_client()
    client.set_cookie("wm_console", "eyJrZXlfaGFzaCI6IngiLCJyb2xlIjoicG0ifQ.bad.signature", path="/console")
    assert client.get("/console/catalogue/products").status_code == 303


def test_a_removed_key_ends_its_sessions(demo_app, api_keys, settings_overrides, comps):
    """Another worker (its own key cache) with the same secret: the session works there until the key goes."""
    from wallet_market.app import create_app

    console = Console(demo_app.test_client())
    console.sign_in(api_keys["pm"])
    cookie = console.client.get_cookie("wm_console", path="/console").value
    other = create_app(settings_overrides, start_background=False)
    try:
        client = other.test_client()
        client.set_cookie("wm_console", cookie, path="/console")
        assert client.get("/console/catalogue/products").status_code == 200
        comps.redis.hdel(comps.keys.api_keys(), key_hash(api_keys["pm"]))
        third = create_app(settings_overrides, start_background=False)
        try:
            client = third.test_client()
            client.set_cookie("wm_console", cookie, path="/console")
            response = client.get("/console/catalogue/products")
            assert response.status_code == 303 and response.headers["Location"].startswith("/console/login")
        finally:
            third.extensions["wallet_market"].close()
    finally:
        other.extensions["wallet_market"].close()


def test_sign_out_ends_the_session(pm):
    response = pm.post("/console/logout")
    assert response.status_code == 303 and response.headers["Location"] == "/console/login"
    assert pm.client.get("/console/catalogue/products").status_code == 303


@pytest.mark.parametrize(
    ("key", "message"),
    [("", "paste an API key"), ("wm_pm_not-a-key", "this key is not known"), ("app", "the console is for pm and finance keys"),
     ("internal", "the console is for pm and finance keys")],
)
def test_sign_in_refusals_are_shown_next_to_the_key_field(demo_app, api_keys, key, message):
    console = Console(demo_app.test_client())
    console.get("/console/login")
    response = console.post("/console/login", {"api_key": api_keys.get(key, key)})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'id="f-api-key-error"' in html and message in html
    assert 'aria-describedby="f-api-key-help f-api-key-error"' in html
    with console.client.session_transaction("/console/") as session:
        assert "key_hash" not in session


def test_sign_in_goes_back_to_the_page_asked_for_but_never_off_the_console(demo_app, api_keys):
    client = demo_app.test_client()
    first = client.get("/console/draft")
    assert first.status_code == 303 and first.headers["Location"] == "/console/login?next=/console/draft"
    for target, expected in (("/console/draft", "/console/draft"), ("https://evil.example/", "/console/catalogue/"),
                             ("//evil.example/console/", "/console/catalogue/"), ("/docs", "/console/catalogue/")):
        console = Console(demo_app.test_client())
        console.get("/console/login")
        response = console.post("/console/login", {"api_key": api_keys["pm"], "next": target})
        assert response.headers["Location"] == expected


# -- CSRF --------------------------------------------------------------------------------------------


def test_a_post_without_a_csrf_token_is_refused(pm, comps):
    before = comps.admin.get("products", "xingyun_loan")
    response = pm.client.post("/console/catalogue/products/xingyun_loan", data={"promo": "无令牌"})
    assert response.status_code == 403
    assert "refused" in response.get_data(as_text=True)
    assert comps.admin.get("products", "xingyun_loan") == before


def test_a_post_with_a_wrong_or_foreign_csrf_token_is_refused(pm, console_for, comps):
    other = console_for("pm")
    for token in ("not-a-token", other.token):
        response = pm.client.post("/console/draft/publish", data={"note": "x", "csrf_token": token})
        assert response.status_code == 403
    assert comps.admin.versions()["current"] == 1


def test_sign_in_itself_needs_the_csrf_token(demo_app, api_keys):
    client = demo_app.test_client()
    client.get("/console/login")
    assert client.post("/console/login", data={"api_key": api_keys["pm"]}).status_code == 403
    response = client.post("/console/logout")
    assert response.status_code == 403


def test_every_form_of_every_page_carries_the_csrf_token(pm, finance):
    for console, paths in (
        (pm, ["/console/catalogue/products", "/console/catalogue/products/xingyun_loan", "/console/catalogue/rules/new",
              "/console/draft", "/console/versions"]),
        (finance, ["/console/compare", "/console/reconciliation"]),
    ):
        for path in paths:
            html = console.get(path).get_data(as_text=True)
            posts = html.count('method="post"')
            assert posts >= 1
            assert html.count('name="csrf_token"') == posts, path
            assert csrf_of(html) == console.token


# -- roles ----------------------------------------------------------------------------------------------


def _pages(app, role: str) -> list[str]:
    paths = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if getattr(view, "console_role", None) == role and "GET" in rule.methods:
            sample = {"kind": "products", "entity_id": "xingyun_loan", "experiment_id": SAMPLE_EXPERIMENT}
            path = rule.rule
            for name, value in sample.items():
                path = path.replace(f"<{name}>", value)
            paths.append(path)
    return sorted(paths)


def test_each_role_sees_only_its_own_pages(demo_app, pm, finance, comps):
    start_pin_experiment(comps, SAMPLE_EXPERIMENT)
    pm_pages, finance_pages = _pages(demo_app, "pm"), _pages(demo_app, "finance")
    assert {"/console/catalogue/<kind>".replace("<kind>", "products"), "/console/draft", "/console/preview"} <= set(pm_pages)
    assert {"/console/revenue", "/console/compare", "/console/reconciliation"} <= set(finance_pages)
    for path in pm_pages:
        assert pm.client.get(path).status_code in (200, 303), path
        assert pm.client.get(path, follow_redirects=True).status_code == 200, path
        refused = finance.client.get(path)
        assert refused.status_code == 403, path
        assert "for product managers" in refused.get_data(as_text=True)
    for path in finance_pages:
        assert finance.client.get(path).status_code == 200, path
        assert pm.client.get(path).status_code == 403, path


def test_finance_cannot_write_the_catalogue(finance, comps):
    before = comps.admin.get("products", "xingyun_loan")
    response = finance.post("/console/catalogue/products/xingyun_loan", {"promo": "财务改的"})
    assert response.status_code == 403
    assert finance.post("/console/draft/publish", {"note": "finance"}).status_code == 403
    assert comps.admin.get("products", "xingyun_loan") == before
    assert comps.admin.versions()["current"] == 1


def test_visitors_are_sent_to_sign_in(demo_app):
    client = demo_app.test_client()
    for path in _pages(demo_app, "pm") + _pages(demo_app, "finance"):
        response = client.get(path)
        assert response.status_code == 303 and response.headers["Location"].startswith("/console/login"), path


def test_pages_are_utf8_and_load_nothing_from_elsewhere(pm):
    response = pm.get("/console/catalogue/products")
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    html = response.get_data(as_text=True)
    assert "星云借·钱包专享" in html
    assert "http://" not in html.split("<body>")[0] and "https://" not in html.split("<body>")[0]
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert pm.client.get("/console/static/vendor/htmx/htmx.min.js").status_code == 200


def test_the_api_opens_no_console_session(pm, auth):
    """The session cookie is scoped to /console: API calls neither read nor set it."""
    response = pm.client.get("/v1/layout?page=home", headers=auth("app"))
    assert response.status_code == 200
    assert not response.headers.getlist("Set-Cookie")
    assert pm.client.get("/openapi.json").status_code == 200
