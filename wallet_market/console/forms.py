"""The console's forms: which fields each has, how a field is shown, read and merged.

Catalogue entities: a form posts only the fields it shows. An edit is a
partial update: the draft entity is read, the submitted fields are merged into
it (dotted names such as ``funnel.ctr_bps`` reach nested objects) and the
result goes through the same shape schema and admin service as the API, so the
same guards run. Errors come back as a map of JSON paths to messages;
:func:`route_errors` puts each next to the field it names.

The experiment and evaluation forms are described the same way
(:data:`EXPERIMENT_FORM`, :data:`EVALUATE_FORM`): their text becomes the body
the experiments or evaluation service takes (:func:`experiment_body`,
:func:`evaluation_request`), and the service's own errors go next to their
fields through :func:`route_errors` too.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Iterable, Mapping, Sequence

from marshmallow import ValidationError

from ..services.errors import ServiceError

from ..domain.catalogue import (
    LICENCE_TYPES,
    PARTNER_STATUSES,
    PRODUCT_KINDS,
    PRODUCT_STATUSES,
    RISK_TIERS,
    RULE_ACTIONS,
    SETTLEMENT_MODELS,
)

TIERED = re.compile(r"^\s*(A|B|C|D|default)\s*[=:]\s*(-?\d+)\s*$")


@dataclass(frozen=True)
class Field:
    name: str  # dotted path in the entity
    label: str
    widget: str  # text, textarea, int, optint, bool, select, date, datetime, list, choices, tiered, json, secret
    choices: tuple[str, ...] = ()
    help: str = ""
    optional: bool = False

    @property
    def html_id(self) -> str:
        return "f-" + re.sub(r"[^a-zA-Z0-9]+", "-", self.name)


@dataclass(frozen=True)
class Group:
    name: str | None  # the nested object's key, or None for top-level fields
    legend: str
    fields: tuple[Field, ...]
    optional: bool = False  # all blank: the object is left out (``None``)


@dataclass(frozen=True)
class EntityForm:
    kind: str
    id_field: str
    singular: str
    groups: tuple[Group, ...]
    summary: tuple[str, ...]  # columns of the list page

    @property
    def fields(self) -> list[Field]:
        return [f for g in self.groups for f in g.fields]

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)


def _f(name, label, widget="text", *choices, help="", optional=False) -> Field:
    return Field(name, label, widget, tuple(choices), help, optional)


PARTNER_FORM = EntityForm(
    "partners", "partner_id", "partner",
    (
        Group(None, "Partner", (
            _f("partner_id", "Partner id", help="a-z, 0-9, _ or -; cannot change later"),
            _f("legal_name", "Legal name"),
            _f("licence_type", "Licence type", "select", *LICENCE_TYPES),
            _f("licence_id", "Licence id"),
            _f("licence_expires_on", "Licence expires on", "date"),
            _f("whitelisted", "Whitelisted", "bool"),
            _f("status", "Status", "select", *PARTNER_STATUSES),
        )),
        Group(None, "Integration", (
            _f("prescreen_url", "Pre-screen URL", optional=True),
            _f("joint_login_url", "Joint-login URL", optional=True),
            _f("settlement_url", "Settlement URL", optional=True),
            _f("timeout_ms", "Timeout (ms)", "int"),
            _f("daily_lead_cap", "Daily lead cap", "optint", help="blank: no cap"),
            _f("daily_approval_cap", "Daily approval cap", "optint", help="blank: no cap"),
            _f("signing_secret", "Signing secret", "secret", help="16–256 characters; blank keeps the current one"),
        )),
    ),
    ("partner_id", "legal_name", "licence_type", "status", "licence_expires_on"),
)

PRODUCT_FORM = EntityForm(
    "products", "product_id", "product",
    (
        Group(None, "Card", (
            _f("product_id", "Product id", help="a-z, 0-9, _ or -; cannot change later"),
            _f("owner", "Owner", help="in_house or a partner id"),
            _f("kind", "Kind", "select", *PRODUCT_KINDS),
            _f("title", "Title"),
            _f("promo", "Promotion", help="no rate of its own: the APR range is the only rate on the card"),
            _f("disclosure", "Disclosure", "textarea"),
            _f("lender_name", "Lender name"),
            _f("licence_id", "Licence id"),
            _f("limit_min_fen", "Limit from (fen)", "int"),
            _f("limit_max_fen", "Limit to (fen)", "int"),
            _f("apr_min_bps", "APR from (bps)", "int"),
            _f("apr_max_bps", "APR to (bps)", "int", help="at most 2400 (24%)"),
            _f("term_min_days", "Term from (days)", "int"),
            _f("term_max_days", "Term to (days)", "int"),
            _f("requires_login", "Requires login", "bool"),
            _f("status", "Status", "select", *PRODUCT_STATUSES),
            _f("action_url", "Action URL"),
            _f("daily_impression_cap", "Daily impression cap", "optint", help="blank: no cap"),
        )),
        Group("settlement", "Settlement", (
            _f("settlement.model", "Model", "select", *SETTLEMENT_MODELS),
            _f("settlement.cps_rate_bps", "CPS rate (bps)", "int"),
            _f("settlement.fee_fen", "Fee (fen)", "int"),
            _f("settlement.transfer_price_bps", "Transfer price (bps)", "int"),
        )),
        Group("funnel", "Funnel", (
            _f("funnel.ctr_bps", "Click-through (bps)", "int"),
            _f("funnel.apply_rate_bps", "Apply rate (bps)", "int"),
            _f("funnel.approval_rate_bps", "Approval rate (bps)", "tiered", help="a number, or per tier: A=3500, B=2800"),
            _f("funnel.draw_rate_bps", "Draw rate (bps)", "int"),
            _f("funnel.new_customer_rate_bps", "New-customer rate (bps)", "int"),
            _f("funnel.avg_loan_fen", "Average loan (fen)", "int"),
            _f("funnel.term_months", "Term (months)", "int"),
        )),
        Group("lending", "In-house lending economics", (
            _f("lending.apr_bps", "APR (bps)", "optint"),
            _f("lending.cost_of_funds_bps", "Cost of funds (bps)", "optint"),
            _f("lending.annual_loss_bps", "Annual loss (bps)", "tiered", help="a number, or per tier: A=250, B=400", optional=True),
            _f("lending.opex_bps", "Operating cost (bps)", "optint"),
            _f("lending.capital_charge_bps", "Capital charge (bps)", "optint"),
        ), optional=True),
        Group("eligibility", "Eligibility", (
            _f("eligibility.risk_tiers", "Risk tiers", "choices", *RISK_TIERS),
            _f("eligibility.age_min", "Minimum age", "optint"),
            _f("eligibility.age_max", "Maximum age", "optint"),
            _f("eligibility.regions", "Regions", "list", help="comma-separated; blank: every region"),
        )),
        Group("schedule", "Schedule", (
            _f("schedule.starts_at", "Starts at", "datetime", help="ISO 8601 with offset, e.g. 2026-01-01T00:00:00+08:00; blank: open", optional=True),
            _f("schedule.ends_at", "Ends at", "datetime", help="blank: open", optional=True),
        )),
    ),
    ("product_id", "title", "owner", "kind", "promo", "status"),
)

PAGE_FORM = EntityForm(
    "pages", "page_id", "page",
    (
        Group(None, "Page", (
            _f("page_id", "Page id", help="a-z, 0-9, _ or -; cannot change later"),
            _f("title", "Title"),
            _f("editorial_order", "Editorial order", "list", help="product ids, comma-separated: the order with personalisation off"),
            _f("slots", "Slots", "json", help="a JSON list of {slot_id, position_weight_bps, accepts, visible_to_visitors, fallback_product_id}"),
        )),
    ),
    ("page_id", "title"),
)

RULE_FORM = EntityForm(
    "rules", "rule_id", "rule",
    (
        Group(None, "Rule", (
            _f("rule_id", "Rule id", help="a-z, 0-9, _ or -; cannot change later"),
            _f("action", "Action", "select", *RULE_ACTIONS),
            _f("description", "Description"),
            _f("priority", "Priority", "int", help="lower runs first"),
            _f("enabled", "Enabled", "bool"),
            _f("page_id", "Page id", optional=True),
            _f("slot_id", "Slot id", optional=True),
            _f("product_id", "Product id", optional=True),
            _f("partner_id", "Partner id", optional=True),
            _f("factor_bps", "Factor (bps)", "optint", help="boost above 10000, damp below"),
            _f("floor_rpm_fen", "Floor (fen per 1,000 impressions)", "optint"),
            _f("max_slots", "Maximum slots", "optint"),
            _f("condition", "Condition", "json", help='JSON object of field to accepted values, e.g. {"risk_tier": ["D"]}'),
        )),
        Group("window", "Window", (
            _f("window.starts_at", "Starts at", "datetime", help="ISO 8601 with offset; blank: open", optional=True),
            _f("window.ends_at", "Ends at", "datetime", help="blank: open", optional=True),
        )),
    ),
    ("rule_id", "action", "page_id", "product_id", "priority", "enabled"),
)

FORMS = {f.kind: f for f in (PARTNER_FORM, PRODUCT_FORM, PAGE_FORM, RULE_FORM)}

# A new experiment: the body of ``POST /admin/v1/experiments``. The choices of
# ``page`` (the served pages) and ``treatment_version`` (the frozen candidates)
# are filled in per request with :func:`with_choices`.
EXPERIMENT_FORM = EntityForm(
    "experiments", "experiment_id", "experiment",
    (
        Group(None, "Experiment", (
            _f("experiment_id", "Experiment id", help="a-z, 0-9, _ or -; names the experiment in its results"),
            _f("page", "Page", "select", help="the page it runs on: a page of the served rules and of the candidate"),
            _f("treatment_version", "Treatment version", "select",
               help="a frozen candidate: its rules serve the treatment arm, the published rules the control"),
        )),
        Group(None, "Who takes part", (
            _f("traffic_bps", "Traffic (bps)", "int",
               help="share of all users in the experiment, 0–10000 (10000: everyone); the rest are held out"),
            _f("treatment_bps", "Treatment share (bps)", "int",
               help="share of the experiment's users served the candidate, 0–10000 (5000: half)"),
        )),
        Group(None, "When", (
            _f("starts_at", "Starts at", "datetime", help="ISO 8601 with offset, e.g. 2026-01-01T00:00:00+08:00"),
            _f("ends_at", "Ends at", "datetime", help="after the start and in the future"),
        )),
    ),
    ("experiment_id", "page", "treatment_version", "starts_at", "ends_at"),
)

# An off-policy evaluation: the body of ``POST /admin/v1/rulesets/evaluate`` (as a query string).
EVALUATE_FORM = EntityForm(
    "evaluations", "candidate", "evaluation",
    (
        Group(None, "Evaluate", (
            _f("candidate", "Candidate", "select", help="the draft as it is now, or a stored version"),
            _f("from", "From", "date", help="first day (UTC) of the log; blank: from the first"),
            _f("to", "To", "date", help="last day (UTC) of the log; blank: to the newest"),
            _f("view", "View", "select", "group", "platform",
               help="group: the vendor's whole P&L; platform: what the platform books"),
        )),
    ),
    ("candidate", "from", "to", "view"),
)


def with_choices(form: EntityForm, choices: Mapping[str, Sequence[str]]) -> EntityForm:
    """``form`` with the choices of the named select fields replaced (choices known only per request)."""
    groups = tuple(
        dataclasses.replace(group, fields=tuple(
            dataclasses.replace(f, choices=tuple(choices[f.name])) if f.name in choices else f for f in group.fields
        ))
        for group in form.groups
    )
    return dataclasses.replace(form, groups=groups)

# What a new entity's form starts from.
BLANK: dict[str, dict[str, Any]] = {
    "partners": {"licence_type": "consumer_finance", "whitelisted": True, "status": "active", "timeout_ms": 300},
    "products": {
        "owner": "in_house", "kind": "loan", "status": "active", "requires_login": True,
        "settlement": {"model": "cps", "cps_rate_bps": 0, "fee_fen": 0, "transfer_price_bps": 0},
        "funnel": {"ctr_bps": 0, "apply_rate_bps": 0, "approval_rate_bps": 0, "draw_rate_bps": 0,
                   "new_customer_rate_bps": 10000, "avg_loan_fen": 0, "term_months": 12},
        "lending": None,
        "eligibility": {"risk_tiers": list(RISK_TIERS), "age_min": None, "age_max": None, "regions": []},
        "schedule": {"starts_at": None, "ends_at": None},
    },
    "pages": {"slots": [{"slot_id": "top", "position_weight_bps": 10000, "accepts": list(PRODUCT_KINDS),
                         "visible_to_visitors": True, "fallback_product_id": None}], "editorial_order": []},
    "rules": {"action": "boost", "priority": 100, "enabled": True, "condition": {}, "window": {"starts_at": None, "ends_at": None}},
}


# -- showing ------------------------------------------------------------------------------


def get_path(entity: Mapping[str, Any] | None, name: str) -> Any:
    value: Any = entity
    for part in name.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def display_value(spec: Field, value: Any) -> Any:
    """The value as the form shows it (text for inputs, a list for choice groups, a bool for checkboxes)."""
    if spec.widget == "bool":
        return bool(value)
    if spec.widget == "choices":
        return list(value or [])
    if spec.widget == "secret" or value is None:
        return ""
    if spec.widget == "list":
        return ", ".join(str(v) for v in value)
    if spec.widget == "tiered" and isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if spec.widget == "json":
        return json.dumps(value, ensure_ascii=False, indent=2)
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return str(value)


def form_values(form: EntityForm, entity: Mapping[str, Any] | None, submitted: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What each field shows: the submitted text when re-showing a refused form, else the entity's value."""
    values = {}
    for spec in form.fields:
        if submitted is not None and spec.name in submitted:
            values[spec.name] = submitted[spec.name]
        else:
            values[spec.name] = display_value(spec, get_path(entity, spec.name))
    return values


# -- reading --------------------------------------------------------------------------------


def read_submitted(form: EntityForm, posted) -> dict[str, Any]:
    """The raw values of the fields present in ``posted`` (a form MultiDict), as the form would show them."""
    out: dict[str, Any] = {}
    for spec in form.fields:
        if spec.name not in posted:
            continue
        values = posted.getlist(spec.name)
        if spec.widget == "bool":
            out[spec.name] = "1" in values
        elif spec.widget == "choices":
            out[spec.name] = [v for v in values if v]
        else:
            out[spec.name] = values[-1]
    return out


def _convert(spec: Field, raw: Any) -> Any:
    """The entity value of one submitted field; ``ValueError`` with a message for the person."""
    if spec.widget in ("bool", "choices"):
        return raw
    text = str(raw).strip()
    if spec.widget == "int":
        if not re.fullmatch(r"-?\d+", text):
            raise ValueError("enter a whole number")
        return int(text)
    if spec.widget == "optint":
        if text == "":
            return None
        if not re.fullmatch(r"-?\d+", text):
            raise ValueError("enter a whole number, or leave it blank")
        return int(text)
    if spec.widget == "tiered":
        if text == "":
            if spec.optional:
                return None
            raise ValueError("enter a number of basis points, or values per tier like A=3500, B=2800")
        if re.fullmatch(r"-?\d+", text):
            return int(text)
        tiers = {}
        for part in re.split(r"[,;\s]+(?=[A-Za-z])", text):
            match = TIERED.match(part)
            if not match:
                raise ValueError(f"cannot read {part.strip()!r}: write a number, or per tier like A=3500, B=2800")
            tiers[match.group(1)] = int(match.group(2))
        return tiers
    if spec.widget == "list":
        return [item.strip() for item in text.split(",") if item.strip()]
    if spec.widget == "json":
        try:
            return json.loads(text or "null")
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    if spec.widget in ("date", "datetime") or spec.optional:
        return text or None
    return str(raw)


def set_path(entity: dict[str, Any], name: str, value: Any) -> None:
    parts = name.split(".")
    target = entity
    for part in parts[:-1]:
        if not isinstance(target.get(part), dict):
            target[part] = {}
        target = target[part]
    target[parts[-1]] = value


def merge(form: EntityForm, base: Mapping[str, Any], submitted: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """``base`` with the submitted fields merged in, and the errors of fields that could not be read."""
    entity = copy.deepcopy(dict(base))
    errors: dict[str, list[str]] = {}
    for spec in form.fields:
        if spec.name not in submitted:
            continue
        if spec.widget == "secret":
            if str(submitted[spec.name]).strip():
                entity[spec.name] = str(submitted[spec.name]).strip()
            continue
        try:
            set_path(entity, spec.name, _convert(spec, submitted[spec.name]))
        except ValueError as exc:
            errors[spec.name] = [str(exc)]
    for group in form.groups:
        if group.optional and group.name and isinstance(entity.get(group.name), dict):
            if all(v is None for v in entity[group.name].values()):
                entity[group.name] = None
    return entity, errors


def flatten_messages(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested messages as a map of dotted paths to messages."""
    out: dict[str, list[str]] = {}
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            if key == "_schema":
                path = prefix or "_schema"
            elif isinstance(key, int):
                path = f"{prefix}[{key}]"
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
            for p, m in flatten_messages(value, path).items():
                out.setdefault(p, []).extend(m)
    elif isinstance(messages, (list, tuple)):
        if all(isinstance(m, str) for m in messages):
            out[prefix or "_schema"] = list(messages)
        else:
            for m in messages:
                for p, ms in flatten_messages(m, prefix).items():
                    out.setdefault(p, []).extend(ms)
    else:
        out[prefix or "_schema"] = [str(messages)]
    return out


def validate_shape(kind: str, entity: Mapping[str, Any]) -> tuple[dict[str, Any] | None, dict[str, list[str]]]:
    """The entity through the API's shape schema: ``(loaded, {})`` or ``(None, errors by path)``."""
    from ..services.catalogue_schemas import PageSchema, PartnerSchema, ProductSchema, RuleSchema

    schema = {"partners": PartnerSchema, "products": ProductSchema, "pages": PageSchema, "rules": RuleSchema}[kind]()
    try:
        return schema.load(dict(entity)), {}
    except ValidationError as exc:
        return None, flatten_messages(exc.messages)


def errors_by_path(exc: ServiceError) -> dict[str, list[str]]:
    """A service's refusal as errors by path, for :func:`route_errors`; its message is the page's own."""
    return {**{path: list(messages) for path, messages in exc.errors.items()}, "_schema": [exc.message]}


def page_errors(exc: ServiceError) -> list[tuple[str, str]]:
    """A service's refusal as a page's list of (path, message): its message first, then each path's."""
    return [("", exc.message), *((path, message) for path, messages in exc.errors.items() for message in messages)]


def route_errors(form: EntityForm, errors: Mapping[str, Iterable[str]], entity_id: str | None) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """Put each error next to the field (or group) its path names; the rest are the page's own.

    Paths may name this entity inside the catalogue (``products[xingyun_loan].promo``)
    or the field directly (``promo``); a path below a field (``slots[top].accepts``)
    goes to that field with the rest of the path in the message.
    """
    names = {f.name for f in form.fields} | {g.name for g in form.groups if g.name}
    own = f"{form.kind}[{entity_id}]." if entity_id else None
    by_field: dict[str, list[str]] = {}
    general: list[tuple[str, str]] = []
    for path, messages in errors.items():
        local = path[len(own):] if own and path.startswith(own) else path
        target = _nearest(local, names)
        for message in messages:
            if target is None:
                general.append(("" if path == "_schema" else path, message))
            else:
                rest = local[len(target):].lstrip(".")
                by_field.setdefault(target, []).append(f"{rest}: {message}" if rest else message)
    return by_field, general


def _nearest(path: str, names: set[str]) -> str | None:
    candidate = path
    while candidate:
        if candidate in names:
            return candidate
        cut = max(candidate.rfind("."), candidate.rfind("["))
        if cut <= 0:
            return None
        candidate = candidate[:cut]
    return None


def field_group(form: EntityForm, name: str) -> Group | None:
    return next((g for g in form.groups if g.name == name), None)


def summary_value(entity: Mapping[str, Any], name: str) -> str:
    value = get_path(entity, name)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "—" if value in (None, "") else str(value)


# -- experiments and evaluation -----------------------------------------------------------------


def aware_datetime(text: str) -> datetime:
    """An ISO 8601 date and time with its offset; ``ValueError`` with a message for the person."""
    text = text.strip()
    if not text:
        raise ValueError("enter a date and time, e.g. 2026-01-01T00:00:00+08:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("cannot read this: write ISO 8601, e.g. 2026-01-01T00:00:00+08:00") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("add the time zone offset, e.g. +08:00 or Z")
    return moment


def experiment_body(submitted: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The create body of the experiments service from the form's text, and the fields that cannot be read.

    Only reading happens here (whole numbers, dates with offsets); whether the
    experiment can run is the service's to say.
    """
    complete = {f.name: submitted.get(f.name, "") for f in EXPERIMENT_FORM.fields}
    merged, errors = merge(EXPERIMENT_FORM, {}, complete)
    body: dict[str, Any] = {
        "experiment_id": str(complete["experiment_id"]).strip(),
        "page": str(complete["page"]).strip(),
        "traffic_bps": merged.get("traffic_bps"),
        "treatment_bps": merged.get("treatment_bps"),
    }
    version = str(complete["treatment_version"]).strip()
    if re.fullmatch(r"[1-9][0-9]{0,8}", version):
        body["treatment_version"] = int(version)
    else:
        errors["treatment_version"] = ["choose a candidate version (freeze the draft below if there is none)"]
    for name in ("starts_at", "ends_at"):
        try:
            body[name] = aware_datetime(str(complete[name]))
        except ValueError as exc:
            errors[name] = [str(exc)]
    return body, errors


def evaluation_request(submitted: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """``candidate``, ``first``, ``last`` and ``view`` for the evaluation service, and the fields that cannot be read."""
    errors: dict[str, list[str]] = {}
    request: dict[str, Any] = {
        "candidate": str(submitted.get("candidate", "")).strip(),
        "view": str(submitted.get("view", "group")).strip() or "group",
    }
    for name, key in (("from", "first"), ("to", "last")):
        text = str(submitted.get(name, "")).strip()
        request[key] = None
        if text:
            try:
                request[key] = date.fromisoformat(text)
            except ValueError:
                errors[name] = ["enter a date as YYYY-MM-DD"]
    return request, errors
