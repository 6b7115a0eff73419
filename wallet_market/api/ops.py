"""Operations endpoints: liveness, readiness, metrics, and the benchmark baseline."""
from __future__ import annotations

import time

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint

from .. import metrics
from .auth import components

ops = Blueprint("ops", __name__, url_prefix="", description="Operations.")


@ops.route("/healthz")
class Health(MethodView):
    @ops.response(200)
    def get(self):
        """The process is alive"""
        return {"status": "ok"}


@ops.route("/readyz")
class Ready(MethodView):
    @ops.response(200)
    def get(self):
        """Ready to serve: a rule set is loaded and Redis answers

        503 with the reason when not. A process that lost Redis but holds a
        snapshot still serves layouts (degraded) and says so here.
        """
        comps = components()
        snapshot = comps.snapshots.current
        redis_ok = True
        try:
            comps.redis.ping()
        except Exception:  # any failure to reach Redis means not ready
            redis_ok = False
        body = {
            "ruleset_version": snapshot.version if snapshot else None,
            "snapshot_age_seconds": round(time.time() - snapshot.loaded_at, 3) if snapshot else None,
            "redis": "ok" if redis_ok else "unreachable",
        }
        if snapshot is None or not redis_ok:
            body["status"] = "not_ready"
            return body, 503
        body["status"] = "ready"
        return body


@ops.route("/metrics")
class Metrics(MethodView):
    def get(self):
        """Prometheus metrics"""
        payload, content_type = metrics.exposition()
        return Response(payload, content_type=content_type)


def blueprints() -> list[Blueprint]:
    return [ops]
