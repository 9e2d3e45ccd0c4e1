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
    from optuna.trial import TrialState

    what = "no compression" if job.plan is None else job.plan.describe()
    skip = TrialOutcome(job.number, earlier.plan, what, "skipped",
                        message=f"not run: the same plan as trial {earlier.number}",
                        origin=origin)
    trial.set_user_attr("outcome", to_dict(skip))
    if earlier.state == "complete":
        told = next(t for t in study.get_trials(deepcopy=False) if t.number == earlier.number)
        study.tell(trial, told.values)
    else:
        study.tell(trial, state=TrialState.PRUNED)
