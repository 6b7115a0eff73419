"""Sign-in, sign-out and the console's front door."""
from __future__ import annotations

from flask import g, redirect, render_template, request, url_for

from ..services.access import Forbidden, RateLimited, Unauthorized
from ..services.errors import Unavailable
from . import auth
from .blueprint import console


@console.get("/")
def home():
    viewer = auth.current_viewer()
    if viewer is None:
        return redirect(url_for("console.login"), 303)
    return redirect(url_for(auth.HOME[viewer.role]), 303)


@console.route("/login", methods=["GET", "POST"])
def login():
    errors: dict[str, list[str]] = {}
    next_target = request.values.get("next", "")
    if request.method == "POST":
        api_key = request.form.get("api_key", "").strip()
        if not api_key:
            errors["api_key"] = ["paste an API key of role pm or finance"]
        else:
            try:
                viewer = auth.sign_in(api_key)
            except Unauthorized:
                errors["api_key"] = ["this key is not known"]
            except Forbidden as exc:
                errors["api_key"] = [f"{exc.message.split(';')[0]}: the console is for pm and finance keys"]
            except (RateLimited, Unavailable) as exc:
                errors["api_key"] = [exc.message]
            else:
                return redirect(auth.safe_next(next_target, viewer.role), 303)
    elif auth.current_viewer() is not None:
        return redirect(auth.safe_next(next_target, g.viewer.role), 303)
    status = 422 if errors else 200
    return render_template(
        "console/login.html", errors=errors, next=next_target, expired=g.get("session_expired", False)
    ), status


@console.post("/logout")
def logout():
    auth.sign_out()
    return redirect(url_for("console.login"), 303)
