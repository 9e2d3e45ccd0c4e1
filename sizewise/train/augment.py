"""Training-batch augmentation for images: random crop with zero padding, and a horizontal flip where mirroring keeps
the label (natural photos, not digits: a mirrored 2, 3 or 7 is no digit, so a model taught that it is loses accuracy).

Written on the batch tensor with torch ops rather than torchvision transforms, because those work on one image at a
time (PIL or a per-image call) and the loop's batches are already one (N, C, H, W) array; one indexing op crops the
whole batch. The randomness comes from a generator the loop seeds from (seed, epoch, step), not from torch's global
RNG, so a resumed run draws the same crops and flips as an uninterrupted one.
"""

from __future__ import annotations

import numpy as np
import torch

from sizewise.core.errors import ConfigError
from sizewise.data.dataset import Dataset

AUGMENTS = ("auto", "none", "crop", "crop+flip")
# Datasets of digits or characters: mirroring changes (or destroys) the class. Matched as substrings of the dataset's
# name, so a user folder called "mnist_png" or an HF "svhn" copy is caught too. 1-channel data never flips either.
NOT_MIRRORABLE = ("mnist", "digit", "svhn", "usps", "char", "letter", "ocr")


def resolve_augment(requested: str, dataset: Dataset, inputs) -> tuple[str, str]:
    """(what will be applied: none | crop | crop+flip, why) for ``dataset`` whose train inputs are ``inputs``."""
    images = dataset.task == "image-classification" and isinstance(inputs, np.ndarray) and inputs.ndim == 4
    if not images:
        if requested in ("crop", "crop+flip"):
            raise ConfigError(f"augment '{requested}' crops and flips images; dataset '{dataset.name}' is "
                              f"{dataset.task}", hint="use augment 'auto' or 'none' for this data")
        return "none", f"no augmentation: {dataset.task} data is not images"
    height, width = inputs.shape[2:]
    pad = padding_for(height, width)
    if requested == "none":
        return "none", "no augmentation (augment 'none'; 'auto' chooses crop/flip for the dataset)"
    if requested != "auto":
        return requested, f"{_describe(requested, pad)} (as requested)"
    channels = inputs.shape[1]
    name = dataset.name.lower()
    digits_like = [t for t in NOT_MIRRORABLE if t in name]
    if channels == 1 or digits_like:
        why = f"'{dataset.name}' looks like digits/characters" if digits_like else "1-channel images"
        return "crop", f"auto: {_describe('crop', pad)}; no flip ({why}: mirroring can change the class)"
    return "crop+flip", f"auto: {_describe('crop+flip', pad)} ({channels}-channel natural images)"


def padding_for(height: int, width: int) -> int:
    """4 pixels for a 32x32 image (the CIFAR recipe of He et al. 2016), scaled with size: 1 for 8x8, 3 for 28x28."""
    return max(1, min(height, width) // 8)


def _describe(mode: str, pad: int) -> str:
    crop = f"random crop, padding {pad}"
    return crop + " + horizontal flip" if mode == "crop+flip" else crop


def augment_batch(images: np.ndarray, mode: str, generator: torch.Generator) -> np.ndarray:
    """``images`` (N, C, H, W) randomly shifted by up to ``padding_for`` pixels (the uncovered border zero: black for
    [0, 1] images, the mean colour for normalised ones) and, with ``crop+flip``, half of them mirrored."""
    x = torch.from_numpy(np.ascontiguousarray(images))
    n, _, height, width = x.shape
    pad = padding_for(height, width)
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator)
    rows = (dy + torch.arange(height))[:, :, None]  # (N, H, 1)
    cols = (dx + torch.arange(width))[:, None, :]  # (N, 1, W)
    # advanced indices on dims 0, 2, 3 around a slice: the result is (N, H, W, C)
    x = padded[torch.arange(n)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    if mode == "crop+flip":
        flip = torch.rand(n, generator=generator) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return x.contiguous().numpy()


def batch_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    """A generator for one training batch, a function of (seed, epoch, step) alone, so no state needs saving."""
    state = np.random.SeedSequence([seed, epoch, step]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
