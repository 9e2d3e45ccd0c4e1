"""Images the way a Hugging Face image model's processor prepares them: resized, centre-cropped, normalised.

The processor's settings are recorded in ``loaded.metadata["image_processor"]`` when the model loads (and travel with
a saved run directory), so data can be prepared the same way without the processor object. The resizing is done
here in torch on float arrays rather than by calling the processor: its PIL backend goes through 8-bit images
(one more rounding) and runs one image at a time, while sizewise prepares whole splits of float arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sizewise.core.errors import DataError

_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}  # PIL's codes; lanczos/box/hamming -> bicubic, the closest
_CONVNEXT_WARP_FROM = 384  # ConvNeXt's processor warps to size x size from this size up, else resize + crop


def _size(value: Any) -> dict[str, int]:
    """A processor's ``size``/``crop_size`` (a dict in transformers 4, a SizeDict in 5) as a plain dict."""
    if value is None:
        return {}
    if isinstance(value, int):
        return {"height": value, "width": value}
    keys = ("height", "width", "shortest_edge", "longest_edge")
    items = value.items() if isinstance(value, dict) else ((k, getattr(value, k, None)) for k in keys)
    return {k: int(v) for k, v in items if k in keys and v is not None}


def processor_metadata(processor: Any, num_channels: int = 3) -> dict[str, Any]:
    """What :func:`prepare_images` needs from ``processor``, as JSON: the model's input size, resizing, mean/std."""
    resize = _size(getattr(processor, "size", None)) if getattr(processor, "do_resize", True) else {}
    crop = _size(getattr(processor, "crop_size", None)) if getattr(processor, "do_center_crop", False) else {}
    crop_pct = getattr(processor, "crop_pct", None)
    if crop and "height" in crop:
        size = [crop["height"], crop["width"]]
    elif "height" in resize:
        size = [resize["height"], resize["width"]]
    elif "shortest_edge" in resize:
        size = [resize["shortest_edge"]] * 2
    else:
        raise ValueError(f"{type(processor).__name__} has no fixed output size (size={resize}, crop_size={crop})")
    resample = getattr(processor, "resample", 2)
    resample = int(getattr(resample, "value", resample) if resample is not None else 2)
    normalize = bool(getattr(processor, "do_normalize", True))
    mean = [float(v) for v in (getattr(processor, "image_mean", None) or [0.0] * num_channels)]
    std = [float(v) for v in (getattr(processor, "image_std", None) or [1.0] * num_channels)]
    return {"class": type(processor).__name__.removesuffix("Pil"), "size": size, "resize": resize,
            "crop": [crop["height"], crop["width"]] if "height" in crop else None,
            "crop_pct": float(crop_pct) if crop_pct is not None and "shortest_edge" in resize else None,
            "resample": _RESAMPLE.get(resample, "bicubic"), "normalize": normalize,
            "mean": mean if normalize else [0.0] * len(mean), "std": std if normalize else [1.0] * len(std)}


def _resize(x: torch.Tensor, height: int, width: int, mode: str) -> torch.Tensor:
    if tuple(x.shape[-2:]) == (height, width):
        return x
    if mode == "nearest":
        return torch.nn.functional.interpolate(x, size=(height, width), mode="nearest")
    # antialias: PIL filters when it shrinks, so a plain bilinear downsample would alias where the processor does not
    out = torch.nn.functional.interpolate(x, size=(height, width), mode=mode, align_corners=False, antialias=True)
    return out.clamp(0.0, 1.0) if mode == "bicubic" else out  # PIL clips bicubic overshoot to the pixel range


def _resize_shortest(x: torch.Tensor, edge: int, mode: str) -> torch.Tensor:
    h, w = x.shape[-2:]
    short, long = (h, w) if h <= w else (w, h)
    other = int(edge * long / short)
    return _resize(x, *((edge, other) if h <= w else (other, edge)), mode)


def _center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    if h < height or w < width:  # the processors pad with zeros; resizing first makes this rare
        x = torch.nn.functional.pad(x, (0, max(0, width - w), 0, max(0, height - h)))
        h, w = x.shape[-2:]
    top, left = (h - height) // 2, (w - width) // 2
    return x[..., top:top + height, left:left + width]


def prepare_images(loaded, images: np.ndarray) -> np.ndarray:
    """``images`` (N, C, h, w) floats in [0, 1] -> what ``loaded``'s processor would feed the model (N, 3, H, W).

    Grey images (C = 1) are repeated to three channels, as the processors' RGB conversion does.
    """
    meta = loaded.metadata.get("image_processor")
    if not meta:
        raise DataError(f"model '{loaded.reference}' has no image processor settings",
                        hint="load the Hugging Face directory with its preprocessor_config.json")
    x = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    if x.dim() != 4:
        raise DataError(f"images must be an (N, C, H, W) array, got shape {tuple(x.shape)}")
    channels = len(meta["mean"])
    if x.shape[1] == 1 and channels == 3:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[1] != channels:
        raise DataError(f"model '{loaded.reference}' takes {channels}-channel images, got {x.shape[1]} channels")
    if x.numel() and (float(x.min()) < -1e-3 or float(x.max()) > 1 + 1e-3):
        raise DataError(f"images for model '{loaded.reference}' must be in [0, 1] before its processor normalises "
                        f"them, got values from {float(x.min()):.3g} to {float(x.max()):.3g}",
                        hint="give the images unnormalised (pixel / 255)")
    mode, resize = meta["resample"], meta["resize"]
    if "height" in resize:
        x = _resize(x, resize["height"], resize["width"], mode)
    elif "shortest_edge" in resize:
        edge = resize["shortest_edge"]
        if meta.get("crop_pct") is not None:  # ConvNeXt: resize to edge / crop_pct, crop edge x edge (or warp)
            if edge < _CONVNEXT_WARP_FROM:
                x = _center_crop(_resize_shortest(x, int(edge / meta["crop_pct"]), mode), edge, edge)
            else:
                x = _resize(x, edge, edge, mode)
        else:
            x = _resize_shortest(x, edge, mode)
    if meta.get("crop"):
        x = _center_crop(x, *meta["crop"])
    if tuple(x.shape[-2:]) != tuple(meta["size"]):  # a processor without resizing given other sizes: fit them
        x = _resize(x, *meta["size"], mode)
    mean = torch.tensor(meta["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(meta["std"]).view(1, -1, 1, 1)
    return ((x - mean) / std).numpy().astype(np.float32)
