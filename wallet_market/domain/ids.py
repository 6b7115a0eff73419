"""The shapes of identifiers that enter from outside: catalogue ids, user ids, partners' event ids.

Identifiers end up inside Redis key names (``{u:<user_id>}:profile``), signed
tokens and log lines, so each is checked against its pattern as a whole — the
pattern must match the entire string, a trailing newline included — and no
pattern admits the hash-tag braces ``{ }``, the key separator ``:``, glob
characters, whitespace or control characters.

- catalogue ids (partners, products, pages, slots, rules): 1–64 characters of
  ``a-z``, ``0-9``, ``_`` and ``-``, starting with a letter or digit;
- user ids and partners' event ids: 1–128 characters of ``A-Z``, ``a-z``,
  ``0-9``, ``.``, ``_`` and ``-``, starting with a letter or digit.
"""
from __future__ import annotations

import re

ENTITY_ID_PATTERN = r"[a-z0-9][a-z0-9_\-]{0,63}"
USER_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._\-]{0,127}"
EVENT_ID_PATTERN = USER_ID_PATTERN

ENTITY_ID = re.compile(ENTITY_ID_PATTERN)
USER_ID = re.compile(USER_ID_PATTERN)
EVENT_ID = re.compile(EVENT_ID_PATTERN)

ENTITY_ID_RULE = "must be 1–64 characters of a-z, 0-9, _ or -, starting with a letter or digit"
USER_ID_RULE = "must be 1–128 characters of A-Z, a-z, 0-9, '.', '_' or '-', starting with a letter or digit"
EVENT_ID_RULE = USER_ID_RULE


def is_entity_id(value: object) -> bool:
    """Whether ``value`` is a well-formed catalogue id (the whole string)."""
    return isinstance(value, str) and ENTITY_ID.fullmatch(value) is not None


def is_user_id(value: object) -> bool:
    """Whether ``value`` is a well-formed user id (the whole string)."""
    return isinstance(value, str) and USER_ID.fullmatch(value) is not None


def is_event_id(value: object) -> bool:
    """Whether ``value`` is a well-formed partner event id (the whole string)."""
    return isinstance(value, str) and EVENT_ID.fullmatch(value) is not None
