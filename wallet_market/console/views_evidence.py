"""Product managers' evidence pages: candidates, experiments with their results, off-policy evaluation.

Each page goes through the same services as the API (``/admin/v1/experiments``,
``/admin/v1/rulesets/candidates`` and ``/evaluate``), so the same checks run;
their errors are shown next to the field they name (:func:`forms.route_errors`).
Reads are kept to what a page shows: the list is one read, an experiment's page
one read of its record and one scan per arm, the forms one read of the
candidates; the served pages and version come from the in-process snapshot.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from flask import flash, redirect, render_template, request, url_for

from ..services.errors import Conflict, Invalid, ServiceError
from . import auth, charts, forms
from .blueprint import console
from .forms import EVALUATE_FORM, EXPERIMENT_FORM, route_errors, with_choices
from .wiring import ConsoleServices, console_services

PM = "pm"
ESTIMATORS = (("ips", "IPS"), ("snips", "SNIPS"), ("dm", "DM"), ("dr", "DR"))
VIEWS = ("group", "platform")
DEFAULT_DAYS = 14  # how long a new experiment runs unless told otherwise
NOTE_LIMIT = 500
# Where the freeze form goes back to: the page it was on, with the new candidate chosen.
FREEZE_RETURNS = {"experiment": ("console.experiment_new", "treatment_version"), "evaluate": ("console.evaluate", "candidate")}


def _served(services: ConsoleServices):
    try:
        return services.serving()
    except ServiceError:  # nothing published yet: the forms still show, the service says why
        return None


def _version_label(record: dict[str, Any], when: str) -> str:
    """``version N — note (frozen|published YYYY-MM-DD HH:MM)`` of a candidate or published version's record."""
    note = f" — {record['note']}" if record.get("note") else ""
    return f"version {record['version']}{note} ({when} {str(record.get(f'{when}_at') or '')[:16].replace('T', ' ')})"


def _short_utc(moment: datetime) -> str:
    """A UTC time to the minute, as short as ISO 8601 writes it: ``2026-03-01T09:30Z``."""
    return moment.astimezone(timezone.utc).isoformat(timespec="minutes").replace("+00:00", "Z")


def _freeze_context(then: str, note: str = "", freeze_errors=None, freeze_general=None) -> dict[str, Any]:
    return {"freeze_then": then, "freeze_note": note, "freeze_errors": freeze_errors or {},
            "freeze_general": freeze_general or []}


# -- the list ------------------------------------------------------------------------------------


@console.get("/experiments")
@auth.requires(PM)
def experiments():
    listing = sorted(console_services().experiments.list(), key=lambda e: str(e.get("created_at", "")), reverse=True)
    return render_template("console/experiments.html", experiments=listing)


# -- a new experiment -------------------------------------------------------------------------------


def _experiment_page(services: ConsoleServices, values: dict | None = None, field_errors=None, general=None,
                     status: int = 200, **freeze):
    candidates = services.admin.candidates()
    served = _served(services)
    pages = sorted(served.catalogue.pages) if served else []
    newest_first = [str(c["version"]) for c in reversed(candidates)]
    form = with_choices(EXPERIMENT_FORM, {"page": pages, "treatment_version": ["", *newest_first]})
    if values is None:
        now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
        chosen = request.args.get("treatment_version", "")
        values = forms.form_values(form, {
            "page": "home" if "home" in pages else (pages[0] if pages else ""),
            "treatment_version": chosen if chosen in newest_first else (newest_first[0] if newest_first else ""),
            "traffic_bps": 10_000, "treatment_bps": 5_000,
            "starts_at": _short_utc(now), "ends_at": _short_utc(now + timedelta(days=DEFAULT_DAYS)),
        })
    labels = {"treatment_version": {"": "choose a candidate", **{str(c["version"]): _version_label(c, "frozen") for c in candidates}}}
    return render_template(
        "console/experiment_new.html", form=form, values=values, field_errors=field_errors or {},
        general_errors=general or [], labels=labels, candidates=candidates, served=served,
        **{**_freeze_context("experiment"), **freeze},
    ), status


@console.route("/experiments/new", methods=["GET", "POST"])
@auth.requires(PM)
def experiment_new():
    services = console_services()
    if request.method == "GET":
        return _experiment_page(services)
    submitted = forms.read_submitted(EXPERIMENT_FORM, request.form)
    body, errors = forms.experiment_body(submitted)
    if not errors:
        try:
            record = services.experiments.create(body, auth.actor())
        except (Invalid, Conflict) as exc:
            errors = forms.errors_by_path(exc)
        else:
            flash(f"Started experiment {record['experiment_id']} on page {record['page']}.", "ok")
            return redirect(url_for("console.experiment", experiment_id=record["experiment_id"]), 303)
    field_errors, general = route_errors(EXPERIMENT_FORM, errors, None)
    values = forms.form_values(EXPERIMENT_FORM, {}, submitted)
    return _experiment_page(services, values, field_errors, general, 422)


# -- candidates ---------------------------------------------------------------------------------------


@console.post("/candidates")
@auth.requires(PM)
def freeze_candidate():
    """Freeze the draft as a candidate version and go back to the page the form was on, with it chosen."""
    services = console_services()
    then = request.form.get("then", "")
    if then not in FREEZE_RETURNS:
        then = "experiment"
    note = request.form.get("note", "").strip()
    errors: dict[str, list[str]] = {}
    general: list[tuple[str, str]] = []
    if len(note) > NOTE_LIMIT:
        errors["note"] = [f"at most {NOTE_LIMIT} characters"]
    else:
        try:
            record = services.admin.freeze_candidate(auth.actor(), note)
        except (Invalid, Conflict) as exc:
            general = forms.page_errors(exc)
        else:
            flash(f"Froze the draft as candidate version {record['version']}.", "ok")
            endpoint, field = FREEZE_RETURNS[then]
            return redirect(url_for(endpoint, **{field: record["version"]}), 303)
    freeze = _freeze_context(then, note, errors, general)
    if then == "evaluate":
        return _evaluate_page(services, status=422, **freeze)
    return _experiment_page(services, status=422, **freeze)


# -- one experiment -------------------------------------------------------------------------------------


def _lift_chart(lift: dict[str, Any]):
    if lift.get("estimate_bps") is None:
        return None
    return charts.intervals(
        "experiment-lift", "Lift of group revenue per 1,000 impressions, treatment against control, with its 95% interval",
        [("lift", lift["estimate_bps"], lift.get("ci_low_bps"), lift.get("ci_high_bps"))], label=charts.percent_label,
    )


@console.get("/experiments/<experiment_id>")
@auth.requires(PM)
def experiment(experiment_id: str, general=None, status: int = 200):
    report = console_services().experiments.report(experiment_id)
    results = report["results"]
    return render_template(
        "console/experiment.html", experiment=report["experiment"], results=results,
        lift_chart=_lift_chart(results["lift"]), general_errors=general or [],
    ), status


def _change(experiment_id: str, action: str):
    services = console_services()
    try:
        if action == "stop":
            record = services.experiments.stop(experiment_id, auth.actor())
        else:
            record = services.experiments.ship(experiment_id, auth.actor())
    except (Invalid, Conflict) as exc:
        general = forms.page_errors(exc)
        return experiment(experiment_id, general=general, status=exc.status)
    if action == "stop":
        flash(f"Stopped experiment {experiment_id}: everyone gets the published rules again; its results stay.", "ok")
    else:
        flash(f"Shipped experiment {experiment_id}: version {record['treatment_version']} is now served to everyone.", "ok")
    return redirect(url_for("console.experiment", experiment_id=experiment_id), 303)


@console.post("/experiments/<experiment_id>/stop")
@auth.requires(PM)
def experiment_stop(experiment_id: str):
    return _change(experiment_id, "stop")


@console.post("/experiments/<experiment_id>/ship")
@auth.requires(PM)
def experiment_ship(experiment_id: str):
    return _change(experiment_id, "ship")


# -- evaluation -----------------------------------------------------------------------------------------


def _estimate_chart(result: dict[str, Any]):
    estimators = result["estimators"]
    if all(estimators[key]["rpm_fen"] is None for key, _ in ESTIMATORS):
        return None
    logged = result["logged"]["rpm_fen"]
    return charts.intervals(
        "evaluation-estimates",
        f"The candidate's {result['view']} revenue per 1,000 slot impressions by estimator, with 95% intervals",
        [(name, estimators[key]["rpm_fen"], estimators[key]["ci_low_fen"], estimators[key]["ci_high_fen"])
         for key, name in ESTIMATORS],
        reference=("logged policy", logged) if logged is not None else None,
    )


def _evaluate_page(services: ConsoleServices, status: int = 200, **freeze):
    published_versions, candidates = services.admin.stored_versions()
    served = _served(services)
    choices = ["draft"]
    labels = {"draft": "the draft, as it is now"}
    if served is not None and served.version:
        choices.append(str(served.version))
        labels[str(served.version)] = f"version {served.version} (served now)"
    for published in reversed(published_versions):  # earlier versions, newest first: what a rollback would serve
        if str(published["version"]) not in choices:
            choices.append(str(published["version"]))
            labels[str(published["version"])] = _version_label(published, "published")
    for candidate in reversed(candidates):
        if str(candidate["version"]) not in choices:
            choices.append(str(candidate["version"]))
            labels[str(candidate["version"])] = f"candidate {_version_label(candidate, 'frozen')}"
    form = with_choices(EVALUATE_FORM, {"candidate": choices, "view": VIEWS})
    submitted = request.args.get("submitted") == "1"
    raw = forms.read_submitted(form, request.args) if submitted else None
    values = forms.form_values(form, {"candidate": request.args.get("candidate", "draft"), "view": "group"}, raw)
    errors: dict[str, list[str]] = {}
    result = chart = None
    if raw is not None:
        asked, errors = forms.evaluation_request(raw)
        if not errors:
            try:
                result = services.evaluate(asked["candidate"], asked["first"], asked["last"], asked["view"])
            except Invalid as exc:
                errors = forms.errors_by_path(exc)
        if result is not None:
            chart = _estimate_chart(result)
    field_errors, general = route_errors(form, errors, None)
    return render_template(
        "console/evaluate.html", form=form, values=values, field_errors=field_errors, general_errors=general,
        labels={"candidate": labels}, result=result, chart=chart, estimators=ESTIMATORS,
        **{**_freeze_context("evaluate"), **freeze},
    ), (422 if errors else status)


@console.get("/evaluate")
@auth.requires(PM)
def evaluate():
    return _evaluate_page(console_services())
