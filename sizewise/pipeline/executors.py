"""Where trials run: in this process, or on a Ray cluster (a local Ray instance when no address is given).

Both take a list of (job, context) (a trial's number and Plan of frozen configs, and plain settings: all picklable)
and return outcomes in the same order, so the search loop, and therefore the sampler's sequence of suggestions, is
identical whichever runs the trials. A Ray cluster needs the output directory on a filesystem every node sees,
since trials write their artifacts there.
"""

from __future__ import annotations

from sizewise.core.optional import require
from sizewise.pipeline.trial import TrialContext, TrialJob, TrialOutcome, run_trial


class LocalExecutor:
    name = "local"

    def run(self, jobs: list[tuple[TrialJob, TrialContext]]) -> list[TrialOutcome]:
        return [run_trial(job, ctx) for job, ctx in jobs]

    def close(self) -> None:
        pass


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_trial: int = 1):
        self.ray = require("ray", "ray", "the Ray executor")
        self._started_here = not self.ray.is_initialized()
        if self._started_here:
            self.ray.init(address=address, include_dashboard=False, log_to_driver=False,
                          ignore_reinit_error=True)
        self._remote = self.ray.remote(num_cpus=cpus_per_trial)(run_trial)

    def run(self, jobs: list[tuple[TrialJob, TrialContext]]) -> list[TrialOutcome]:
        return self.ray.get([self._remote.remote(job, ctx) for job, ctx in jobs])

    def close(self) -> None:
        if self._started_here:
            self.ray.shutdown()


def make_executor(kind: str, address: str | None = None):
    return RayExecutor(address) if kind == "ray" else LocalExecutor()
