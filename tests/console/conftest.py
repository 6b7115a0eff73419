"""Fixtures of the console's server-side tests: a signed-in test client per role."""
from __future__ import annotations

import re

import pytest

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page carries no CSRF token"
    return match.group(1)


class Console:
    """A test client signed in to the console, posting forms with the page's CSRF token."""

    def __init__(self, client):
        self.client = client
        self.token = None

    def get(self, path, **kwargs):
        response = self.client.get(path, **kwargs)
        if response.mimetype == "text/html" and CSRF.search(response.get_data(as_text=True)):
            self.token = csrf_of(response.get_data(as_text=True))
        return response

    def post(self, path, data=None, **kwargs):
        if self.token is None:
            self.get("/console/login")
        return self.client.post(path, data={"csrf_token": self.token, **(data or {})}, **kwargs)

    def sign_in(self, api_key: str):
        self.get("/console/login")
        response = self.post("/console/login", {"api_key": api_key})
        assert response.status_code == 303, response.get_data(as_text=True)
        self.get(response.headers["Location"], follow_redirects=True)
        return response


@pytest.fixture
def console_for(app, api_keys):
    """``console_for("pm")``: a new test client signed in with that role's key."""

    def make(role: str) -> Console:
        console = Console(app.test_client())
        console.sign_in(api_keys[role])
        return console

    return make


@pytest.fixture
def pm(demo_app, console_for):
    return console_for("pm")


@pytest.fixture
def finance(demo_app, console_for):
    return console_for("finance")
