"""Calibration batches from the user's data, as the model's own input dictionaries."""

from __future__ import annotations

import numpy as np
import torch

from sizewise.core.errors import DataError
from sizewise.data.dataset import Dataset
from sizewise.models.loaded import LoadedModel


def calibration_batches(loaded: LoadedModel, dataset: Dataset | None, samples: int,
                        batch_size: int = 16) -> list[dict[str, np.ndarray]]:
    """Up to ``samples`` examples of the train split (the validation split when there is no train split; never the
    test split), in model-input form."""
    if dataset is None:
        raise DataError("static quantization calibrates activation ranges on real inputs", hint="pass --data")
    from sizewise.tasks import check_compatible

    check_compatible(loaded, dataset)
    source = next((s for s in ("train", "validation") if s in dataset.splits), None)
    if source is None:
        raise DataError(f"dataset '{dataset.name}' has no train or validation split to calibrate on "
                        f"(splits: {', '.join(sorted(dataset.splits))}); the test split is never used for calibration")
    split = dataset.split(source).sample(samples)
    batches = []
    for start in range(0, len(split), batch_size):
        chunk = split.inputs[start:start + batch_size]
        if isinstance(chunk, np.ndarray):
            batches.append({loaded.inputs.name: chunk.astype(np.float32)})
            continue
        texts = [t for item in chunk for t in (item if isinstance(item, tuple) else (item,))]
        enc = loaded.inputs.tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="np")
        batches.append({k: np.asarray(v, dtype=np.int64) for k, v in enc.items()})
    return batches


def as_torch(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in batch.items()}
