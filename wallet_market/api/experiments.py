"""Experiments (role ``pm``): a candidate rule-set version against the published rules, and its results."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from .auth import BEARER, actor, components, require
from .schemas import ExperimentRecordSchema, ExperimentResultsSchema, ExperimentSchema

PM = "pm"

experiments = Blueprint(
    "experiments", __name__, url_prefix="/admin/v1/experiments",
    description="Experiments: a candidate rule-set version served to a share of users, with per-user results.",
)


@experiments.route("")
class Experiments(MethodView):
    decorators = [require(PM)]

    @experiments.doc(security=BEARER)
    @experiments.response(200, ExperimentRecordSchema(many=True))
    def get(self):
        """List every experiment, running or not"""
        return components().experiments.list()

    @experiments.doc(security=BEARER)
    @experiments.arguments(ExperimentSchema)
    @experiments.response(201, ExperimentRecordSchema)
    def post(self, data):
        """Start an experiment on one page

        Units (users; visitors by their `X-Device-Id`) are assigned by a salted
        hash of their id: `traffic_bps` of them take part, `treatment_bps` of
        those get `treatment_version`'s rules, the others the published ones.
        At most one experiment runs on a page at a time; a field that cannot
        work is a 422 naming it.
        """
        return components().experiments.create(data, actor())


@experiments.route("/<experiment_id>")
class ExperimentById(MethodView):
    decorators = [require(PM)]

    @experiments.doc(security=BEARER)
    @experiments.response(200, ExperimentRecordSchema)
    def get(self, experiment_id):
        """Read one experiment"""
        return components().experiments.get(experiment_id)


@experiments.route("/<experiment_id>/stop")
class StopExperiment(MethodView):
    decorators = [require(PM)]

    @experiments.doc(security=BEARER)
    @experiments.response(200, ExperimentRecordSchema)
    def post(self, experiment_id):
        """Stop a running experiment (everyone gets the published rules again; the results stay)"""
        return components().experiments.stop(experiment_id, actor())


@experiments.route("/<experiment_id>/ship")
class ShipExperiment(MethodView):
    decorators = [require(PM)]

    @experiments.doc(security=BEARER)
    @experiments.response(200, ExperimentRecordSchema)
    def post(self, experiment_id):
        """Publish the treatment version and end the experiment (one transaction)"""
        return components().experiments.ship(experiment_id, actor())


@experiments.route("/<experiment_id>/results")
class ExperimentResults(MethodView):
    decorators = [require(PM)]

    @experiments.doc(security=BEARER)
    @experiments.response(200, ExperimentResultsSchema)
    def get(self, experiment_id):
        """Per-arm totals and the lift of group revenue per 1,000 impressions

        Computed per randomisation unit: the interval and p-value come from
        the delta method over the units of each arm, and `srm_p_value` checks
        the split of units between the arms.
        """
        return components().experiments.results(experiment_id)


def blueprints() -> list[Blueprint]:
    return [experiments]
