"""Interleaved check of the ResNet-20 latency search's chosen model (fp16 on onnxruntime) against onnxruntime fp32:
the two were timed minutes apart in the search, under different load.

    .venv/bin/python benchmarks/ab_resnet20_fp16.py     # after benchmarks/shrink_resnet20.py --objective latency

It reads /tmp/shrink-resnet20-latency/trials/0006 (the first, loaded run's chosen model) and the pruning benchmark's
baseline, exports the baseline to ONNX fp32, and times the two ABBA call by call (200 pairs or 40 s, torch at 1
thread; the onnxruntime sessions keep their default thread count), writing
results/shrink_resnet20_fp16_interleaved.json. ``--fp16``/``--base``/``--out`` point it elsewhere (e.g. a smoke run).
The same comparison for any two models, with a bootstrap interval and a verdict:
``sizewise compare BASE FP16_RUN --runtime-a onnxruntime --runtime-b onnxruntime --threads 1``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, interleaved  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fp16", default="/tmp/shrink-resnet20-latency/trials/0006")
    parser.add_argument("--base", default="/tmp/prune-bench/resnet20/baseline")
    parser.add_argument("--out", default=str(RESULTS / "shrink_resnet20_fp16_interleaved.json"))
    args = parser.parse_args()

    import sizewise
    from sizewise.models.convert import to_onnx
    from sizewise.models.onnx_module import OnnxModule

    fp16, base = sizewise.load(args.fp16), sizewise.load(args.base)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = OnnxModule(to_onnx(base, f"{tmp}/fp32.onnx"))
        r = interleaved(fp32, fp16.module, fp16.example_inputs(1), pairs=200, seconds=40, threads=1)
    print(json.dumps(r))
    Path(args.out).write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
