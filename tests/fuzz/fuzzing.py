"""The fuzz harness the tests in ``tests/fuzz`` share: one time/example budget, one way to run a target, one property.

Two profiles:

- **ci** (default): each target runs a fixed number of examples, derandomized (the same inputs every run, so CI never
  fails on a input it did not try before), with a per-example deadline that catches a hang. All targets together
  take ~30 s on a 2-core machine.
- **long**: ``SIZEWISE_FUZZ_SECONDS=120 pytest tests/fuzz -s`` runs each target for that many seconds, in batches of
  fresh random examples (not derandomized), and prints how many examples each target tried. For benchmarks and
  reliability runs; a failure prints the minimal input, which then becomes a named regression test with that input
  kept as bytes.

Every target checks the same property: an input either loads, or raises sizewise's own error (a ``SizewiseError``)
whose message is one line; any other exception is a bug. Hypothesis' example database is off: regressions are kept as
named tests, not in a hidden folder.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings

from sizewise.core.errors import SizewiseError

FUZZ_SECONDS = float(os.environ.get("SIZEWISE_FUZZ_SECONDS") or 0)
LONG = FUZZ_SECONDS > 0
PROFILE = "long" if LONG else "ci"
# Examples per hypothesis run in the long profile: each run draws a fresh random seed, so runs do not repeat.
LONG_BATCH = 300
_QUIET_CHECKS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                 HealthCheck.function_scoped_fixture, HealthCheck.large_base_example]

RESULTS: dict[str, dict[str, float]] = {}  # target -> examples and seconds, printed at the end of the session


def one_line(exc: SizewiseError) -> str:
    """What the CLI prints for ``exc``; asserts it is one line (message and hint)."""
    text = f"{exc.message} — {exc.hint}" if exc.hint else exc.message
    assert isinstance(exc.message, str) and exc.message, f"empty message from {type(exc).__name__}"
    assert "\n" not in text, f"a {type(exc).__name__} of more than one line: {text!r}"
    assert "Traceback" not in text, text
    return text


def expect_sizewise_error(call: Callable[[], Any], *allowed: type[SizewiseError]) -> SizewiseError | None:
    """Run ``call``; None when it succeeds, the error when it raises one of ``allowed`` (default: any
    SizewiseError) with a one-line message. Anything else propagates, and hypothesis reports it as the failure."""
    allowed = allowed or (SizewiseError,)
    try:
        call()
    except allowed as exc:
        one_line(exc)
        return exc
    return None


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def run_target(name: str, body: Callable[..., None], strategies: dict[str, Any], ci_examples: int,
               deadline_s: float = 5.0, max_rss_growth: int = 1 << 30) -> int:
    """Fuzz ``body(**drawn)`` with ``strategies``: ``ci_examples`` examples in the ci profile, ``FUZZ_SECONDS`` of
    batches in the long one. Returns the number of examples tried. A peak-memory growth above ``max_rss_growth``
    over the whole run fails it (a decoder that allocates what a hostile header declares)."""
    count = 0

    def counted(**kwargs: Any) -> None:
        nonlocal count
        count += 1
        body(**kwargs)

    common = dict(deadline=timedelta(seconds=deadline_s), database=None, suppress_health_check=_QUIET_CHECKS,
                  print_blob=True)
    start, rss_before = time.monotonic(), peak_rss_bytes()
    if not LONG:
        test = settings(max_examples=ci_examples, derandomize=True, **common)(given(**strategies)(counted))
        test()
    else:
        # no shrinking phase cost unless something fails: the default phases already shrink only on failure
        test = settings(max_examples=LONG_BATCH, derandomize=False,
                        phases=(Phase.generate, Phase.target, Phase.shrink, Phase.explain), **common)(
            given(**strategies)(counted))
        while time.monotonic() - start < FUZZ_SECONDS:
            test()
    seconds = time.monotonic() - start
    growth = peak_rss_bytes() - rss_before
    RESULTS[name] = {"examples": count, "seconds": round(seconds, 1), "peak_rss_growth_mb": round(growth / 2**20)}
    print(f"\nfuzz[{PROFILE}] {name}: {count} examples in {seconds:.1f} s, peak RSS +{growth / 2**20:.0f} MiB")
    assert growth < max_rss_growth, f"{name}: peak memory grew by {growth / 2**20:.0f} MiB while fuzzing"
    return count
