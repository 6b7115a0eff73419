"""The catalogue in Redis: the draft, immutable rule-set versions, history and audit.

Every write is one optimistic transaction (``WATCH`` the draft revision, then
``MULTI``/``EXEC``), so a write either lands whole, with its audit record, or not
at all. All keys share the ``{catalog}`` hash tag.

A publish is announced on the pub/sub channel right after its transaction
commits, not inside it: Redis Cluster refuses ``PUBLISH`` in a transaction,
and a plain ``PUBLISH`` reaches subscribers on every node of a cluster. An
announcement that fails to go out is only late: serving processes also poll.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Iterable, Mapping

import orjson
import redis
from redis.typing import EncodableT, FieldT

from .connection import RedisClient
from .keys import ENTITY_KINDS, Keys
from .replies import stream_entries, text_hash, text_or_none

log = logging.getLogger(__name__)


class ConcurrentChange(RuntimeError):
    """The draft changed between reading and writing; the caller should retry."""


class UnknownVersion(LookupError):
    pass


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


class CatalogueStore:
    def __init__(self, client: RedisClient, keys: Keys):
        self.client = client
        self.keys = keys

    # -- draft -------------------------------------------------------------
    def read_draft(self) -> tuple[int, dict[str, dict[str, dict]]]:
        """The draft revision and every draft entity, by kind and id."""
        pipe = self.client.pipeline(transaction=False)
        pipe.get(self.keys.draft_revision())
        for kind in ENTITY_KINDS:
            pipe.hgetall(self.keys.draft(kind))
        revision, *hashes = pipe.execute()
        draft = {
            kind: {k.decode(): orjson.loads(v) for k, v in raw.items()} for kind, raw in zip(ENTITY_KINDS, hashes)
        }
        return int(revision or 0), draft

    def write_draft(
        self,
        changes: Iterable[tuple[str, str, Mapping[str, Any] | None]],
        *,
        actor: str,
        expected_revision: int,
        action: str,
        secrets: Mapping[str, str | None] | None = None,
    ) -> int:
        """Apply ``(kind, id, entity-or-None)`` changes to the draft as one transaction.

        ``None`` deletes. ``secrets`` sets (or with ``None`` removes) partner
        signing secrets in the same transaction. Raises :class:`ConcurrentChange`
        if the draft moved past ``expected_revision``. Returns the new revision.
        """
        changes = list(changes)
        with self.client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(self.keys.draft_revision())
                current = int(pipe.get(self.keys.draft_revision()) or 0)
                if current != expected_revision:
                    raise ConcurrentChange(f"draft revision {current} != {expected_revision}")
                befores = {}
                for kind, entity_id, _ in changes:
                    raw = pipe.hget(self.keys.draft(kind), entity_id)
                    befores[(kind, entity_id)] = orjson.loads(raw) if raw else None
                pipe.multi()
                for kind, entity_id, entity in changes:
                    if entity is None:
                        pipe.hdel(self.keys.draft(kind), entity_id)
                    else:
                        pipe.hset(self.keys.draft(kind), entity_id, _dumps(entity))
                    self._audit(
                        pipe,
                        actor=actor,
                        action=action,
                        kind=kind,
                        entity_id=entity_id,
                        before=befores[(kind, entity_id)],
                        after=entity,
                    )
                for partner_id, secret in (secrets or {}).items():
                    if secret is None:
                        pipe.hdel(self.keys.partner_secrets(), partner_id)
                    else:
                        pipe.hset(self.keys.partner_secrets(), partner_id, secret)
                    self._audit(pipe, actor=actor, action="set_secret", kind="partners", entity_id=partner_id)
                pipe.incr(self.keys.draft_revision())
                result = pipe.execute()
            except redis.WatchError:
                raise ConcurrentChange("draft changed during the write") from None
        return int(result[-1])

    def replace_draft(self, catalogue: Mapping[str, list[dict]], *, actor: str, action: str, pipe=None) -> None:
        """Queue commands replacing the whole draft with ``catalogue`` on ``pipe`` (in a MULTI)."""
        id_field = {"partners": "partner_id", "products": "product_id", "pages": "page_id", "rules": "rule_id"}
        for kind in ENTITY_KINDS:
            pipe.delete(self.keys.draft(kind))
            entities = catalogue.get(kind) or []
            if entities:
                pipe.hset(self.keys.draft(kind), mapping={e[id_field[kind]]: _dumps(e) for e in entities})
        pipe.incr(self.keys.draft_revision())
        self._audit(pipe, actor=actor, action=action, kind="catalogue", entity_id="*")

    def load_catalogue(
        self, catalogue: Mapping[str, list[dict]], secrets: Mapping[str, str], *, actor: str, expected_revision: int
    ) -> None:
        """Replace the draft with a whole catalogue file (``catalog load``), atomically."""
        with self.client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(self.keys.draft_revision())
                if int(pipe.get(self.keys.draft_revision()) or 0) != expected_revision:
                    raise ConcurrentChange("draft changed during the load")
                pipe.multi()
                self.replace_draft(catalogue, actor=actor, action="catalog_load", pipe=pipe)
                for partner_id, secret in secrets.items():
                    pipe.hset(self.keys.partner_secrets(), partner_id, secret)
                pipe.execute()
            except redis.WatchError:
                raise ConcurrentChange("draft changed during the load") from None

    def partner_secret(self, partner_id: str) -> str | None:
        return text_or_none(self.client.hget(self.keys.partner_secrets(), partner_id))

    def partner_secrets(self) -> dict[str, str]:
        return text_hash(self.client.hgetall(self.keys.partner_secrets()))

    # -- rule sets ---------------------------------------------------------
    def publish(
        self,
        catalogue: Mapping[str, Any],
        *,
        actor: str,
        expected_revision: int,
        note: str = "",
        rollback_of: int | None = None,
        expected_version: int | None = None,
    ) -> int:
        """Freeze ``catalogue`` (the validated draft) as the next numbered version and serve it.

        One transaction: the version, the pointer, the history record and the
        audit entry land together or not at all; the announcement follows it.
        With ``expected_version``, another version published since raises
        :class:`ConcurrentChange`.
        """
        with self.client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(self.keys.draft_revision(), self.keys.ruleset_counter())
                if int(pipe.get(self.keys.draft_revision()) or 0) != expected_revision:
                    raise ConcurrentChange("draft changed before publishing")
                latest = int(pipe.get(self.keys.ruleset_counter()) or 0)
                if expected_version is not None and latest != expected_version:
                    raise ConcurrentChange("another version was published meanwhile")
                version = latest + 1
                now = time.time()
                record = {
                    "version": version,
                    "published_at": now,
                    "published_by": actor,
                    "note": note,
                    "rollback_of": rollback_of,
                    "counts": {kind: len(catalogue.get(kind) or []) for kind in ENTITY_KINDS},
                }
                body = {**record, "catalogue": catalogue}
                pipe.multi()
                pipe.set(self.keys.ruleset_counter(), version)
                pipe.set(self.keys.ruleset(version), _dumps(body))
                pipe.set(self.keys.ruleset_current(), version)
                pipe.rpush(self.keys.ruleset_history(), _dumps(record))
                if rollback_of is not None:
                    self.replace_draft(catalogue, actor=actor, action="rollback_draft", pipe=pipe)
                self._audit(
                    pipe,
                    actor=actor,
                    action="rollback" if rollback_of is not None else "publish",
                    kind="ruleset",
                    entity_id=str(version),
                    after={"note": note, "rollback_of": rollback_of},
                )
                pipe.execute()
            except redis.WatchError:
                raise ConcurrentChange("another publish or draft write happened at the same time") from None
        self.announce(version)
        return version

    def announce(self, version: int) -> None:
        """Tell every serving process that ``version`` is served (they poll too, so a failure only delays)."""
        try:
            self.client.publish(self.keys.published_channel(), str(version))
        except redis.RedisError as exc:
            log.warning("publish of version %s not announced (serving processes will poll): %s", version, exc)

    def freeze_candidate(self, catalogue: Mapping[str, Any], *, actor: str, expected_revision: int, note: str = "") -> int:
        """Freeze ``catalogue`` (the validated draft) as the next numbered version without serving it.

        The version is stored beside the published ones (experiments and
        evaluations name it), the served pointer stays where it is. One
        transaction: the version, the candidate record and the audit entry.
        """
        with self.client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(self.keys.draft_revision(), self.keys.ruleset_counter())
                if int(pipe.get(self.keys.draft_revision()) or 0) != expected_revision:
                    raise ConcurrentChange("draft changed before freezing")
                version = int(pipe.get(self.keys.ruleset_counter()) or 0) + 1
                record = {
                    "version": version,
                    "frozen_at": time.time(),
                    "frozen_by": actor,
                    "note": note,
                    "draft_revision": expected_revision,
                    "counts": {kind: len(catalogue.get(kind) or []) for kind in ENTITY_KINDS},
                }
                pipe.multi()
                pipe.set(self.keys.ruleset_counter(), version)
                pipe.set(self.keys.ruleset(version), _dumps({**record, "catalogue": catalogue}))
                pipe.rpush(self.keys.ruleset_candidates(), _dumps(record))
                self._audit(pipe, actor=actor, action="freeze_candidate", kind="ruleset", entity_id=str(version),
                            after={"note": note})
                pipe.execute()
            except redis.WatchError:
                raise ConcurrentChange("another publish or draft write happened at the same time") from None
        return version

    def candidates(self) -> list[dict[str, Any]]:
        """Every candidate record, oldest first."""
        return [orjson.loads(r) for r in self.client.lrange(self.keys.ruleset_candidates(), 0, -1)]

    def current_version(self) -> int:
        return int(self.client.get(self.keys.ruleset_current()) or 0)

    def load_version(self, version: int) -> dict[str, Any]:
        """A published version's record and catalogue."""
        raw = self.client.get(self.keys.ruleset(version))
        if raw is None:
            raise UnknownVersion(version)
        return orjson.loads(raw)

    def load_current(self) -> dict[str, Any] | None:
        """The served version's record and catalogue (``None`` before the first publish)."""
        version = self.current_version()
        return self.load_version(version) if version else None

    def history(self) -> list[dict[str, Any]]:
        return [orjson.loads(r) for r in self.client.lrange(self.keys.ruleset_history(), 0, -1)]

    def history_and_candidates(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The publish history and the candidate records, oldest first, in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        pipe.lrange(self.keys.ruleset_history(), 0, -1)
        pipe.lrange(self.keys.ruleset_candidates(), 0, -1)
        history, candidates = pipe.execute()
        return [orjson.loads(r) for r in history], [orjson.loads(r) for r in candidates]

    def audit(self, count: int = 100) -> list[dict[str, Any]]:
        """The newest ``count`` audit records, newest first."""
        out = []
        for entry_id, fields in stream_entries(self.client.xrevrange(self.keys.audit_log(), count=count)):
            record: dict[str, Any] = dict(fields)
            for name in ("before", "after"):
                if name in record:
                    record[name] = orjson.loads(record[name])
            record["entry_id"] = entry_id
            out.append(record)
        return out

    def _audit(self, pipe, *, actor: str, action: str, kind: str, entity_id: str, before=None, after=None) -> None:
        fields: dict[FieldT, EncodableT] = {
            "at": f"{time.time():.3f}",
            "actor": actor,
            "action": action,
            "kind": kind,
            "id": entity_id,
        }
        if before is not None:
            fields["before"] = _dumps(before)
        if after is not None:
            fields["after"] = _dumps(after)
        pipe.xadd(self.keys.audit_log(), fields, maxlen=100_000, approximate=True)
