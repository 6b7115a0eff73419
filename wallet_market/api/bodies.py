"""Request bodies: every JSON body the API reads is parsed here, and only here.

A body is parsed by orjson, which refuses what the standard library would let
through to break things later: a lone UTF-16 surrogate (``"\\ud800"``, which no
Redis write or JSON encoder accepts), ``NaN`` and ``Infinity``. An integer too
large for 64 bits comes out as a float, which every integer field refuses. A
document nested deeper than :data:`MAX_DEPTH` is refused before anything
recurses over it. Each refusal is a 400 naming ``json``.

flask-smorest's ``@arguments`` reads bodies through :class:`JsonParser`, which
also refuses a missing body where the operation takes one (the OpenAPI
document marks every such body required), instead of loading ``{}``.
"""
from __future__ import annotations

from typing import Any, Iterable

import orjson
from flask import Request
from flask_smorest import Blueprint as SmorestBlueprint
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import RequestEntityTooLarge

from ..services.errors import ServiceError

# Deeper than any document of the contract (a scenario override is four levels), far below Python's recursion limit.
MAX_DEPTH = 32


class BadRequest(ServiceError):
    status = 400


class TooLarge(ServiceError):
    status = 413


def read_body(request: Request) -> bytes:
    """The request's body (cached on the request), or :class:`TooLarge` when it exceeds ``MAX_CONTENT_LENGTH``.

    A body announced too large is refused before any view runs (see the app);
    one sent without a length is read up to the limit, and more is refused
    here rather than cut off silently.
    """
    limit = request.max_content_length
    try:
        raw = request.get_data(cache=True)
        if limit is not None and request.content_length is None and len(raw) >= limit:
            request.stream.read(1)  # beyond the limit: raises
    except RequestEntityTooLarge:
        raise TooLarge(f"the request body is larger than {limit} bytes", {"body": [f"at most {limit} bytes"]}) from None
    return raw


def parse_json(raw: bytes) -> Any:
    """The JSON document in ``raw``; :class:`BadRequest` naming ``json`` when it is not one we take."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("the body is not valid JSON", {"json": [f"not valid JSON: {exc}"]}) from None
    if nested_deeper_than(value, MAX_DEPTH):
        raise BadRequest("the body is nested too deeply", {"json": [f"nested deeper than {MAX_DEPTH} levels"]})
    return value


def nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` has arrays or objects nested more than ``limit`` levels (no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def json_body(request: Request) -> Any:
    """The request's JSON body (read once, cached on the request); :class:`BadRequest` when it has none."""
    raw = read_body(request)
    if not raw.strip():
        raise BadRequest("a JSON body is required", {"json": ["missing: send a JSON body"]})
    return parse_json(raw)


class JsonParser(FlaskParser):
    """webargs' Flask parser reading JSON bodies with :func:`parse_json`; a body is never optional.

    The body is read as JSON whatever its ``Content-Type`` says (webargs would
    take a body without ``application/json`` as no body at all, and load the
    schema's defaults in its place).
    """

    def load_json(self, req: Request, schema: Any) -> Any:
        return json_body(req)


class Blueprint(SmorestBlueprint):
    """flask-smorest's blueprint with :class:`JsonParser` for its ``@arguments``."""

    ARGUMENTS_PARSER = JsonParser()
