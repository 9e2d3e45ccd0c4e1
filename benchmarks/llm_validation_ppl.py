"""Validation perplexity on llama.cpp of GGUF files ``benchmarks/llm.py`` wrote: the first --tokens tokens of
WikiText-2 valid.txt, context 1024, stride 512 (the settings of llm.md's test column), 2 threads.

    .venv/bin/python benchmarks/llm_validation_ppl.py     # reads /tmp/llm-table, writes results/llm_validation_ppl.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llm_measure as lm  # noqa: E402
from _common import DATA, RESULTS, finish_meta, log, new_meta  # noqa: E402

FILES = {"llama.cpp Q4_K_M": "smollm2-q4_k_m.gguf", "sizewise int4-awq Q4_0 g32": "sizewise-int4-awq-Q4_0-g32.gguf",
         "sizewise int4-awq Q4_0 g32 + Q5_0/Q8_0 at Q4_K_M's bytes": "sizewise-mixed.gguf",
         "F16 (sizewise writer)": "smollm2-f16.gguf",
         # the same --max-size file as written before Q5_0/Q8_0 layers got searched block scales (commit b4ee702,
         # gguf's reference rounding), kept in the cache by hand for this one comparison; skipped when absent
         "the same at b4ee702 (reference rounding of the Q5_0/Q8_0 layers)": "sizewise-mixed-b4ee702.gguf"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/llm-table"))
    parser.add_argument("--tokens", type=int, default=8192)
    args = parser.parse_args()

    import sizewise
    from sizewise.tasks.perplexity import split_texts

    meta = new_meta(("sizewise", "llama_cpp_python", "transformers"))
    loaded = sizewise.load("smollm2-135m")
    texts = split_texts(sizewise.load_dataset(str(DATA / "wikitext2")), "validation")
    out = {}
    for name, file in FILES.items():
        if not (args.cache / file).is_file():
            log(f"{name}: {args.cache / file} is not there, skipped")
            continue
        llm = lm.open_llama(str(args.cache / file), 2, lm.CONTEXT, logits_all=True)
        try:
            r = lm.stage_ppl(lm.LlamaWindows(llm, loaded.module.config), loaded.inputs.tokenizer, texts, args.tokens, 2)
        finally:
            llm.close()
        out[name] = {"bytes": (args.cache / file).stat().st_size, "validation_token_perplexity":
                     r["stats"]["token_perplexity"], "tokens": r["stats"]["tokens_scored"]}
        log(f"{name}: {out[name]['validation_token_perplexity']:.3f}")
    (RESULTS / "llm_validation_ppl.json").write_text(json.dumps({"meta": finish_meta(meta), "split": "validation",
                                                                 "results": out}, indent=1))


if __name__ == "__main__":
    main()
