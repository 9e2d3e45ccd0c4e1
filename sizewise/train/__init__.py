"""The one training loop (image classification for now); later techniques reuse it for recovery fine-tuning."""

from sizewise.train.loop import TrainConfig, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]

