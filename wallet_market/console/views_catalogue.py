"""Product managers' pages: catalogue, draft changes, publish and rollback, audit, preview, data shares."""
from __future__ import annotations

import re
from datetime import date
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for

from ..domain.catalogue import RISK_TIERS
from ..services.errors import Conflict, Invalid, NotFound, ServiceError
from . import auth, forms
from .blueprint import console
from .diff import KINDS, catalogue_diff, entity_changes
from .forms import FORMS, route_errors
from .wiring import console_services

PM = "pm"
KIND_TITLES = {"partners": "Partners", "products": "Products", "pages": "Pages", "rules": "Rules"}


def _form(kind: str) -> forms.EntityForm:
    form = FORMS.get(kind)
    if form is None:
        abort(404, f"There is no catalogue list called {kind!r}.")
    return form


@console.get("/catalogue/")
@auth.requires(PM)
def catalogue():
    return redirect(url_for("console.catalogue_list", kind="products"), 303)


@console.get("/catalogue/<kind>")
@auth.requires(PM)
def catalogue_list(kind: str, errors=None, status: int = 200):
    form = _form(kind)
    entities = console_services().admin.list(kind)
    return render_template(
        "console/catalogue_list.html", form=form, kind=kind, entities=entities, kind_titles=KIND_TITLES,
        summary_value=forms.summary_value, general_errors=errors or [],
    ), status


def _render_entity(form, kind, entity_id, values, field_errors=None, general=None, status=200):
    return render_template(
        "console/entity_form.html", form=form, kind=kind, entity_id=entity_id, values=values,
        field_errors=field_errors or {}, general_errors=general or [], kind_titles=KIND_TITLES,
    ), status


def _save(form, kind: str, entity_id: str | None, base: dict, submitted: dict):
    """Merge, check the shape, write through the admin service; the errors by path, or ``None`` when saved."""
    merged, errors = forms.merge(form, base, submitted)
    loaded = None
    if not errors:
        loaded, errors = forms.validate_shape(kind, merged)
    if errors or loaded is None:
        return errors
    admin = console_services().admin
    actor = auth.actor()
    try:
        if entity_id is None:
            admin.create(kind, loaded, actor)
        else:
            admin.update(kind, entity_id, loaded, actor)
    except (Invalid, Conflict) as exc:
        return forms.errors_by_path(exc)
    return None


@console.route("/catalogue/<kind>/new", methods=["GET", "POST"])
@auth.requires(PM)
def catalogue_new(kind: str):
    form = _form(kind)
    if request.method == "GET":
        return _render_entity(form, kind, None, forms.form_values(form, forms.BLANK[kind]))
    submitted = forms.read_submitted(form, request.form)
    errors = _save(form, kind, None, forms.BLANK[kind], submitted)
    if errors is None:
        new_id = submitted.get(form.id_field, "").strip()
        flash(f"Created {form.singular} {new_id} in the draft.", "ok")
        return redirect(url_for("console.catalogue_edit", kind=kind, entity_id=new_id), 303)
    field_errors, general = route_errors(form, errors, str(submitted.get(form.id_field, "")).strip() or None)
    return _render_entity(form, kind, None, forms.form_values(form, forms.BLANK[kind], submitted), field_errors, general, 422)


@console.route("/catalogue/<kind>/<entity_id>", methods=["GET", "POST"])
@auth.requires(PM)
def catalogue_edit(kind: str, entity_id: str):
    form = _form(kind)
    entity = console_services().admin.get(kind, entity_id)
    if request.method == "GET":
        return _render_entity(form, kind, entity_id, forms.form_values(form, entity))
    submitted = forms.read_submitted(form, request.form)
    submitted.pop(form.id_field, None)  # the id names the entity; it is not edited
    errors = _save(form, kind, entity_id, entity, submitted)
    if errors is None:
        flash(f"Saved {form.singular} {entity_id} to the draft.", "ok")
        return redirect(url_for("console.catalogue_edit", kind=kind, entity_id=entity_id), 303)
    field_errors, general = route_errors(form, errors, entity_id)
    return _render_entity(form, kind, entity_id, forms.form_values(form, entity, submitted), field_errors, general, 422)


@console.post("/catalogue/<kind>/<entity_id>/delete")
@auth.requires(PM)
def catalogue_delete(kind: str, entity_id: str):
    form = _form(kind)
    try:
        console_services().admin.delete(kind, entity_id, auth.actor())
    except (Invalid, Conflict) as exc:
        return catalogue_list(kind, errors=forms.page_errors(exc), status=422)
    flash(f"Deleted {form.singular} {entity_id} from the draft.", "ok")
    return redirect(url_for("console.catalogue_list", kind=kind), 303)


# -- draft, publish, rollback ---------------------------------------------------------------


def _draft_page(errors=None, note: str = "", status: int = 200):
    admin = console_services().admin
    published = admin.published()
    draft = admin.export()
    changes = catalogue_diff(published["catalogue"] if published else None, draft)
    return render_template(
        "console/draft.html", changes=changes, published=published, kinds=KINDS, kind_titles=KIND_TITLES,
        general_errors=errors or [], note=note,
    ), status


@console.get("/draft")
@auth.requires(PM)
def draft():
    return _draft_page()


@console.post("/draft/publish")
@auth.requires(PM)
def publish():
    note = request.form.get("note", "").strip()
    if len(note) > 500:
        return _draft_page([("note", "at most 500 characters")], note, 422)
    try:
        record = console_services().admin.publish(auth.actor(), note)
    except (Invalid, Conflict) as exc:
        return _draft_page(forms.page_errors(exc), note, 422)
    flash(f"Published version {record['version']}.", "ok")
    return redirect(url_for("console.versions"), 303)


@console.get("/versions")
@auth.requires(PM)
def versions(errors=None, status: int = 200):
    listing = console_services().admin.versions()
    return render_template(
        "console/versions.html", current=listing["current"], versions=list(reversed(listing["versions"])),
        general_errors=errors or [],
    ), status


@console.post("/versions/rollback")
@auth.requires(PM)
def rollback():
    raw = request.form.get("version", "")
    note = request.form.get("note", "").strip()
    if not raw.isdigit() or int(raw) < 1:
        return versions([("version", "choose a published version")], 422)
    try:
        record = console_services().admin.rollback(int(raw), auth.actor(), note)
    except (Invalid, Conflict, NotFound) as exc:
        return versions(forms.page_errors(exc), 422)
    flash(f"Rolled back to version {raw}: now serving it as version {record['version']}; the draft is reset to it.", "ok")
    return redirect(url_for("console.versions"), 303)


@console.get("/audit")
@auth.requires(PM)
def audit():
    entries = console_services().admin.audit(200)
    for entry in entries:
        entry["changes"] = entity_changes(entry.get("before"), entry.get("after"))
    return render_template("console/audit.html", entries=entries)


# -- preview and data shares -------------------------------------------------------------------

PREVIEW_DEFAULTS: dict[str, Any] = {"page": "home", "logged_in": True, "personalized": True, "risk_tier": "", "shares": []}
DECISIONS = ("none", "approved", "declined")


def _preview_form() -> tuple[dict, dict, dict[str, list[str]]]:
    """The preview form's values (from the query string), the preview request they describe, and its errors."""
    args = request.args
    submitted = args.get("submitted") == "1"
    values: dict[str, Any] = {
        "page": args.get("page", PREVIEW_DEFAULTS["page"]),
        "draft": submitted and args.get("draft") == "1",
        "logged_in": args.get("logged_in") == "1" if submitted else True,
        "personalized": args.get("personalized") == "1" if submitted else True,
        "user_id": args.get("user_id", "").strip(),
        "risk_tier": args.get("risk_tier", ""),
        "shares": [p for p in args.getlist("share_with_partners") if p],
        "age": args.get("age", "").strip(),
        "region": args.get("region", "").strip(),
        "device_model": args.get("device_model", "").strip(),
        "app_version": args.get("app_version", "").strip(),
        "new_user": submitted and args.get("new_user") == "1",
        "decision": args.get("in_house_decision", "none"),
        "decided_at": args.get("decided_at", "").strip(),
        "submitted": submitted,
    }
    errors: dict[str, list[str]] = {}
    if values["risk_tier"] not in ("", *RISK_TIERS):
        errors["risk_tier"] = [f"choose one of {', '.join(RISK_TIERS)}, or none"]
    age = None
    if values["age"]:
        if not values["age"].isdigit() or not 0 <= int(values["age"]) <= 130:
            errors["age"] = ["enter an age in whole years, 0–130"]
        else:
            age = int(values["age"])
    if values["decision"] not in DECISIONS:
        errors["in_house_decision"] = [f"choose one of {', '.join(DECISIONS)}"]
    if values["decided_at"]:
        try:
            date.fromisoformat(values["decided_at"])
        except ValueError:
            errors["decided_at"] = ["enter a date as YYYY-MM-DD"]
    for name, limit in (("user_id", 128), ("region", 32), ("device_model", 64), ("app_version", 32)):
        if len(values[name]) > limit:
            errors[name] = [f"at most {limit} characters"]
    if values["app_version"] and not re.fullmatch(r"\d+(\.\d+){0,3}", values["app_version"]):
        errors["app_version"] = ["a version like 5.2.0"]
    user: dict = {
        "logged_in": values["logged_in"],
        "risk_tier": values["risk_tier"] or None,
        "consents": {"personalized": values["personalized"], "share_with_partners": values["shares"]},
        "new_user": values["new_user"],
        "in_house_decision": {"status": values["decision"], "decided_at": values["decided_at"] or None},
        "age": age,
    }
    for name in ("user_id", "region", "device_model", "app_version"):
        if values[name]:
            user[name] = values[name]
    return values, {"page": values["page"], "draft": values["draft"], "user": user}, errors


@console.get("/preview")
@auth.requires(PM)
def preview():
    services = console_services()
    values, body, field_errors = _preview_form()
    serving_catalogue = _served_catalogue(services)
    result, status = None, 200
    if values["submitted"]:
        if field_errors:
            status = 422
        else:
            try:
                result = services.preview(body)
            except NotFound as exc:
                field_errors.setdefault("page", []).append(exc.message)
                status = 422
    pages = sorted(serving_catalogue.pages) if serving_catalogue else []
    partners = sorted(serving_catalogue.partners) if serving_catalogue else []
    explanation: dict[str, list] = {}
    if result:
        for entry in result["explanation"]:
            explanation.setdefault(entry["outcome"], []).append(entry)
    return render_template(
        "console/preview.html", values=values, result=result, field_errors=field_errors, pages=pages,
        partners=partners, explanation=explanation,
    ), status


def _served_catalogue(services):
    try:
        return services.serving().catalogue
    except ServiceError:  # nothing published yet: the form still shows, the preview says why
        return None


@console.get("/data-shares")
@auth.requires(PM)
def data_shares():
    user_id = request.args.get("user_id", "").strip()
    shares, errors = None, {}
    if "user_id" in request.args:
        if not user_id or len(user_id) > 128:
            errors["user_id"] = ["enter a user id of 1–128 characters"]
        else:
            shares = console_services().data_shares(user_id, limit=200)
    return render_template("console/data_shares.html", user_id=user_id, shares=shares, field_errors=errors), 422 if errors else 200
