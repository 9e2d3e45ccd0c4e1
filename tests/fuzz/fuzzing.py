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
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
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


class MultiLineMessage(AssertionError):
    """A sizewise error whose message is not one line; raised with that error's traceback, so it is reported at
    the place the error was raised."""


def one_line(exc: SizewiseError) -> str:
    """What the CLI prints for ``exc``; asserts it is one line (message and hint)."""
    text = f"{exc.message} — {exc.hint}" if exc.hint else exc.message
    assert isinstance(exc.message, str) and exc.message, f"empty message from {type(exc).__name__}"
    if "\n" in text or "Traceback" in text:
        raise MultiLineMessage(f"a {type(exc).__name__} of more than one line: {text[:300]!r}").with_traceback(
            exc.__traceback__)
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


def crash_site(exc: BaseException) -> tuple[str, str]:
    """(exception type, path under sizewise/ of the innermost sizewise frame) of a crash."""
    frames = [f.filename.replace("\\", "/") for f in traceback.extract_tb(exc.__traceback__)]
    inside = [f.split("/sizewise/", 1)[1] for f in frames if "/sizewise/" in f and "/tests/" not in f]
    return type(exc).__name__, inside[-1] if inside else "?"


def run_target(name: str, body: Callable[..., None], strategies: dict[str, Any], ci_examples: int,
               deadline_s: float = 5.0, max_rss_growth: int = 1 << 30,
               known: frozenset[tuple[str, str]] = frozenset()) -> int:
    """Fuzz ``body(**drawn)`` with ``strategies``: ``ci_examples`` examples in the ci profile, ``FUZZ_SECONDS`` of
    batches in the long one. Returns the number of examples tried. A peak-memory growth above ``max_rss_growth``
    over the whole run fails it (a decoder that allocates what a hostile header declares).

    ``known``: crashes found before and not fixed yet, as :func:`crash_site` gives them (for code outside what the
    fuzzing change could fix; a path ending in "/" stands for every file under it). They are counted, not raised,
    and the test ends as xfail while any is hit; any other exception fails it as usual."""
    count = 0
    known_hits: list[str] = []

    def counted(**kwargs: Any) -> None:
        nonlocal count
        count += 1
        try:
            body(**kwargs)
        except Exception as exc:
            kind, where = crash_site(exc)
            if not any(kind == k and (where == w or w.endswith("/") and where.startswith(w)) for k, w in known):
                raise
            known_hits.append(f"{type(exc).__name__} in sizewise/{crash_site(exc)[1]}: {str(exc)[:60]}")

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
    if known_hits:
        pytest.xfail(f"{len(known_hits)} of {count} inputs hit known crashes: {sorted(set(known_hits))[:4]}")
    return count
