"""Plans the search has already run: a sampler over a small categorical space proposes them again, and running one
twice would spend a trial on a result the search already has."""

from __future__ import annotations

from sizewise.core.serialize import to_dict
from sizewise.pipeline.plan import steps_fingerprint
from sizewise.pipeline.trial import TrialJob, TrialOutcome


def same_plan_run(job: TrialJob, finished: list[TrialOutcome]) -> TrialOutcome | None:
    """The finished trial (complete or stopped early) that ran exactly ``job``'s plan, if any. Running it again would
    spend one of the few trials on a result the search already has (every step is seeded by its plan), and would let
    a second timing of the same model win on noise alone."""
    def what_runs(plan: dict | None) -> str | None:  # None: the no-compression plan
        return plan and steps_fingerprint(plan["steps"])

    wanted = job.plan and job.plan.fingerprint()
    return next((o for o in finished if o.state in ("complete", "pruned") and what_runs(o.plan) == wanted), None)


def tell_repeat(study, trial, job: TrialJob, earlier: TrialOutcome, origin: str) -> None:
    """Not run and not counted as a trial: the sampler is told the earlier trial's result, so it learns the plan's
    worth without paying for it again (a repeat told as pruned would teach it that a good plan is bad)."""
    values = None
    if earlier.state == "complete":
        values = next(t for t in study.get_trials(deepcopy=False) if t.number == earlier.number).values
    tell_skipped(study, trial, job, f"not run: the same plan as trial {earlier.number}", origin, values,
                 ran=earlier.plan)


def tell_skipped(study, trial, job: TrialJob, message: str, origin: str, values=None, ran: dict | None = None) -> None:
    """A proposed plan that is not run and not counted as a trial: recorded on the trial as skipped, with why, and
    told to the study: ``values`` (an earlier run's result) teach the sampler the plan's worth; without them it is
    told pruned, which teaches it to avoid the plan. ``ran``: the earlier trial's plan record, when one ran it."""
    from optuna.trial import TrialState

    skip = TrialOutcome(job.number, ran or (job.plan and job.plan.to_dict()),
                        "no compression" if job.plan is None else job.plan.describe(), "skipped", message=message,
                        origin=origin)
    trial.set_user_attr("outcome", to_dict(skip))
    if values is not None:
        study.tell(trial, values)
    else:
        study.tell(trial, state=TrialState.PRUNED)
