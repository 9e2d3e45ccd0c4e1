"""Mixed precision within a byte cap for a 4-bit GGUF model: which linear layers to raise from their 4-bit codes to
Q5_0 or Q8_0 so the file stays under ``max_bytes`` and the output error falls the most.

Greedy by marginal gain per byte: start with every layer at 4 bits; repeatedly take the upgrade (a layer one tier up,
or straight to Q8_0) that removes the most relative output error per extra byte and still fits. This is the
knapsack heuristic importance-driven mixed precision uses (llama.cpp's K-quant mixes set tiers by tensor role
instead); written here because it needs the layers' measured errors, which only the calibration step has.

Measured on SmolLM2-135M with the cap at llama.cpp's Q4_K_M file (``benchmarks/results/llm.md``, llama.cpp, 8,192
tokens, the raised layers with searched block scales): validation perplexity 14.27 against Q4_K_M's 14.48 and the
all-4-bit AWQ file's 15.89; test 25.71 against 26.52 (fp32 24.83). Spending the same cap in the budget fallback's
order or on Q5_0 everywhere was only tried in an uncommitted exploration (both looked worse on validation), so no
number is quoted for them.
"""

from __future__ import annotations

BLOCK_BYTES = {"Q4_0": 18, "Q4_1": 20, "Q5_0": 22, "Q8_0": 34}  # bytes per block of 32 weights
UPGRADES = ("Q5_0", "Q8_0")
ALIGNMENT = 32  # GGUF pads every tensor's data to 32 bytes


def tensor_bytes(numel: int, kind: str) -> int:
    raw = numel // 32 * BLOCK_BYTES[kind]
    return -(-raw // ALIGNMENT) * ALIGNMENT


def allocate(errors: dict[str, dict[str, float]], numel: dict[str, int], base: str, headroom: int,
             ) -> tuple[dict[str, str], int]:
    """``errors[name][kind]``: the layer's relative output error in ``base`` (its 4-bit type) and each of
    :data:`UPGRADES`. Returns the layers raised (name -> Q5_0 / Q8_0) and the extra bytes they cost, at most
    ``headroom``."""
    state = {name: base for name in errors}
    spent = 0
    while True:
        best = None
        for name, current in state.items():
            for kind in UPGRADES:
                if BLOCK_BYTES[kind] <= BLOCK_BYTES[current]:
                    continue
                extra = tensor_bytes(numel[name], kind) - tensor_bytes(numel[name], current)
                if spent + extra > headroom:
                    continue
                gain = (errors[name][current] - errors[name][kind]) / extra
                if gain > 0 and (best is None or gain > best[0]):
                    best = (gain, name, kind, extra)
        if best is None:
            return {n: k for n, k in state.items() if k != base}, spent
        _, name, kind, extra = best
        state[name] = kind
        spent += extra
