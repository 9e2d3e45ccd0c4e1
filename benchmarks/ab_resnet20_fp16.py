"""Interleaved check of the ResNet-20 latency search's chosen model (fp16 on onnxruntime) against onnxruntime fp32:
the two were timed minutes apart in the search, under different load. Usage: .venv/bin/python benchmarks/ab_resnet20_fp16.py
after benchmarks/shrink_resnet20.py --objective latency (it reads /tmp/shrink-resnet20-latency/trials/0006, the first, loaded run's chosen model)."""
import sys, json, tempfile
sys.path.insert(0, "/work/main/benchmarks")
import sizewise
from prune_common import interleaved
from sizewise.models.convert import to_onnx
fp16 = sizewise.load("/tmp/shrink-resnet20-latency/trials/0006")
base = sizewise.load("/tmp/prune-bench/resnet20/baseline")

from sizewise.models.onnx_module import OnnxModule
tmp = tempfile.mkdtemp()
fp32 = OnnxModule(to_onnx(base, f"{tmp}/fp32.onnx"))
inputs = fp16.example_inputs(1)
r = interleaved(fp32, fp16.module, inputs, pairs=200, seconds=40, threads=1)
print(json.dumps(r))
json.dump(r, open("/work/main/benchmarks/results/shrink_resnet20_fp16_interleaved.json", "w"), indent=2)
