"""Operations endpoints: liveness, readiness, metrics, and the benchmark baseline."""
from __future__ import annotations


from flask import Response, request
from flask.views import MethodView
from .bodies import Blueprint

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
        ready, body = components().health.readiness()
        return (body, 200) if ready else (body, 503)


@ops.route("/metrics")
class Metrics(MethodView):
    @ops.doc(security=[{}, {"bearerAuth": []}])
    @ops.alt_response(
        200, success=True, description="The metrics in the Prometheus text format",
        content_type="text/plain", schema={"type": "string"},
    )
    def get(self):
        """Prometheus metrics

        Open to any caller unless `metrics_require_key` is set, when it needs
        an API key of role `internal`. Either way, serve it only on the
        internal network or the scrape port.
        """
        comps = components()
        if comps.settings.metrics_require_key:
            comps.access.authenticate(request.headers.get("Authorization"), ("internal",))
        payload, content_type = metrics.exposition()
        return Response(payload, content_type=content_type)


def blueprints() -> list[Blueprint]:
    return [ops]
