"""Interleaved A/B timing: the loop's order, the verdict's rule, and real comparisons of models whose cost is known."""

import json
import math

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from sizewise.cli.app import app
from sizewise.core.errors import ConfigError
from sizewise.measure.compare import CompareConfig, compare, judge, round_orders, time_interleaved
from sizewise.models.loaded import InputSpec, LoadedModel


class Matmuls(nn.Module):
    """``repeats`` times the same 512 x 512 matmul: 4 repeats cost ~4x the arithmetic of 1, with the same output."""

    def __init__(self, repeats: int):
        super().__init__()
        torch.manual_seed(0)
        self.weight = nn.Parameter(torch.randn(512, 512) / 512**0.5)
        self.repeats = repeats

    def forward(self, x):
        out = x @ self.weight
        for _ in range(self.repeats - 1):
            out = x @ self.weight
        return out


def matmuls(repeats: int) -> LoadedModel:
    return LoadedModel(module=Matmuls(repeats).eval(), inputs=InputSpec(kind="tensor", shape=(512,)),
                       reference=f"matmul x{repeats}", source="factory")


FAST = dict(batch_size=16, threads=1, seconds=1.0)


def test_round_orders_abba_alternates_and_random_never_repeats_across_rounds():
    abba = round_orders(["a", "b"], "abba")
    assert [next(abba) for _ in range(4)] == [["a", "b"], ["b", "a"], ["a", "b"], ["b", "a"]]
    rand = round_orders(["a", "b", "c"], "random", seed=3)
    rounds = [next(rand) for _ in range(200)]
    assert all(sorted(r) == ["a", "b", "c"] for r in rounds)
    assert all(prev[-1] != cur[0] for prev, cur in zip(rounds, rounds[1:]))
    again = round_orders(["a", "b", "c"], "random", seed=3)
    assert [next(again) for _ in range(200)] == rounds  # seeded
    with pytest.raises(ConfigError, match="unknown interleaving order 'aabb'"):
        next(round_orders(["a", "b"], "aabb"))


def test_time_interleaved_warms_up_then_times_every_call_in_rounds():
    log = []
    times = time_interleaved({"a": lambda: log.append("a"), "b": lambda: log.append("b")}, max_rounds=5,
                             max_seconds=60, warmup=2)
    assert log == ["a", "b"] * 2 + ["a", "b", "b", "a", "a", "b", "b", "a", "a", "b"]
    assert {k: len(v) for k, v in times.items()} == {"a": 5, "b": 5} and (times["a"] >= 0).all()
    # past max_seconds it stops, but not before min_rounds
    times = time_interleaved({"a": lambda: None, "b": lambda: None}, max_rounds=10_000, max_seconds=0, min_rounds=7)
    assert len(times["a"]) == 7


@pytest.mark.parametrize("ci, outcome, start", [
    ((1.30, 1.40), "faster", "B is 1.35x faster (95% CI 1.30-1.40)"),
    ((0.97, 1.06), "none", "no speed-up beyond noise"),
    ((1.01, 1.04), "none", "no speed-up beyond noise"),  # excludes 1.0, but not once the 5% run-to-run spread is added
    ((0.50, 0.60), "slower", "B is slower"),
])
def test_judge_claims_a_speed_up_only_when_the_widened_interval_clears_one(ci, outcome, start):
    got, verdict, (lo, hi) = judge(sum(ci) / 2, ci, 0.05)
    assert got == outcome and verdict.startswith(start)
    assert math.isclose(lo, ci[0] * 0.95) and math.isclose(hi, ci[1] * 1.05)


def test_config_rejects_what_it_cannot_run():
    with pytest.raises(ConfigError, match="unknown runtime 'tensorrt' for runtime_b"):
        CompareConfig(runtime_b="tensorrt")
    with pytest.raises(ConfigError, match="seconds must be > 0"):
        CompareConfig(seconds=0)
    with pytest.raises(ConfigError, match="min_rounds \\(50\\) is larger than max_rounds \\(10\\)"):
        CompareConfig(min_rounds=50, max_rounds=10)


def test_a_model_against_itself_is_no_speed_up():
    m = matmuls(1)
    c = compare(m, m, CompareConfig(**FAST))
    assert c.outcome == "none" and c.verdict.startswith("no speed-up beyond noise"), c
    lo, hi = c.decision_interval
    assert lo <= 1.0 <= hi
    assert 0.8 < c.speedup < 1.25 and c.rounds >= 20 and c.threads == 1 and c.same_inputs


def test_a_four_times_slower_model_is_told_apart_in_both_directions():
    fast, slow = matmuls(1), matmuls(4)
    c = compare(slow, fast, CompareConfig(**FAST))
    assert c.outcome == "faster" and c.verdict.startswith("B is ") and " faster (95% CI " in c.verdict, c
    assert c.speedup_ci95[0] > 1.5 and c.decision_interval[0] > 1.0
    assert c.speedup == pytest.approx(c.median_a_ms / c.median_b_ms)
    c = compare(fast, slow, CompareConfig(**FAST, order="random"))
    assert c.outcome == "slower" and c.verdict.startswith("B is slower"), c
    assert c.speedup_ci95[1] < 0.67 and c.decision_interval[1] < 1.0


def test_onnxruntime_side_runs_the_exported_graph(one_thread):
    from sizewise.models.loader import load

    lenet = load("zoo:lenet5")
    c = compare(lenet, lenet, CompareConfig(runtime_b="onnxruntime", threads=1, seconds=0.3))
    assert (c.runtime_a, c.runtime_b) == ("torch", "onnxruntime") and c.median_b_ms > 0
    assert c.to_dict()["schema"] == "sizewise.compare/1"


def test_cli_prints_the_verdict_and_writes_json(tmp_path):
    out = tmp_path / "ab.json"
    result = CliRunner().invoke(app, ["compare", "zoo:lenet5", "zoo:lenet-300-100", "--threads", "1", "--seconds",
                                      "0.5", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["model_a"] == "zoo:lenet5" and data["model_b"] == "zoo:lenet-300-100" and data["threads"] == 1
    assert data["verdict"].split(" (")[0] in result.output  # the verdict line as printed
    assert "zoo:lenet-300-100" in result.output and " ms" in result.output
    # LeNet-300-100 does about 1/9 of LeNet-5's FLOPs: a clear speed-up
    assert data["outcome"] == "faster" and data["speedup_ci95"][0] > 1.0


def test_cli_bad_runtime_is_one_line():
    result = CliRunner().invoke(app, ["compare", "zoo:lenet5", "zoo:lenet5", "--runtime-a", "tvm"])
    assert result.exit_code == 1
    assert "unknown runtime 'tvm' for runtime_a" in result.output and "Traceback" not in result.output
