"""ResNet-20/32/44/56/110 for CIFAR-10 (He et al. 2016, section 4.2), with the paper's **option A** shortcuts.

Option A: when a stage halves the resolution and doubles the width, the shortcut subsamples by 2 and pads the new
channels with zeros, so shortcuts add no parameters. That is what the paper used on CIFAR-10 and why ResNet-20 has
0.27M parameters (269,722 here, BN affine parameters included) and ResNet-56 0.85M (853,018).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ZeroPadShortcut(nn.Module):
    """Option A: stride-2 subsampling plus zero channels; parameter-free.

    Which input channel lands on which output channel is a 0/1 buffer ``select`` (out x in). Unpruned it is the
    paper's layout (the inputs in the middle, zeros either side) and runs as the same ``F.pad``. The buffer exists so
    that structured pruning can narrow the residual channels on both sides of a stage boundary
    (:meth:`prune_in_channels`, :meth:`prune_out_channels`, which Torch-Pruning calls through sizewise's adapter) and so
    that a pruned model is rebuilt from its saved tensors alone; a pruned layout runs as a channel gather (zero FLOPs).
    """

    sized_by_its_tensors = True  # models.reshape.fit_shapes may resize ``select`` to a saved, pruned layout

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        lead = (out_channels - in_channels) // 2
        select = torch.zeros(out_channels, in_channels, dtype=torch.bool)
        select[torch.arange(in_channels) + lead, torch.arange(in_channels)] = True
        self.register_buffer("select", select)
        self._refresh()

    @property
    def in_channels(self) -> int:
        return self.select.shape[1]

    @property
    def out_channels(self) -> int:
        return self.select.shape[0]

    def _refresh(self) -> None:
        """Read the layout once into Python values and one index tensor, so forward (and an ONNX trace of it) needs
        no tensor branching and builds nothing per call."""
        zero = self.in_channels  # index of the zero channel appended in the gather path
        first = self.select.to(torch.uint8).argmax(1).tolist()
        self._source = [i if fed else zero for i, fed in zip(first, self.select.any(1).tolist())]
        self._index = torch.tensor(self._source, dtype=torch.long)
        lead = next((k for k, i in enumerate(self._source) if i != zero), self.out_channels)
        trail = self.out_channels - lead - self.in_channels
        plain = trail >= 0 and self._source == [zero] * lead + list(range(self.in_channels)) + [zero] * trail
        self._pad = (lead, trail) if plain else None

    def prune_out_channels(self, idxs) -> None:
        drop = set(int(i) for i in idxs)
        self.select = self.select[[o for o in range(self.out_channels) if o not in drop]]
        self._refresh()

    def prune_in_channels(self, idxs) -> None:
        drop = set(int(i) for i in idxs)
        self.select = self.select[:, [i for i in range(self.in_channels) if i not in drop]]
        self._refresh()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # weights saved before the layout was a buffer hold none: they are the paper's unpruned layout
        state_dict.setdefault(prefix + "select", self.select)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._refresh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::2, ::2]
        if self._pad is not None:
            return F.pad(x, (0, 0, 0, 0, *self._pad))
        padded = F.pad(x, (0, 0, 0, 0, 0, 1))  # one zero channel for outputs no input feeds
        return padded.index_select(1, self._index.to(x.device))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = ZeroPadShortcut(in_planes, planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    input_shape = (3, 32, 32)

    def __init__(self, depth: int = 20, num_classes: int = 10):
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110), got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, 16, n, stride=1)
        self.layer2 = self._stage(16, 32, n, stride=2)
        self.layer3 = self._stage(32, 64, n, stride=2)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    @staticmethod
    def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(in_planes, planes, stride)]
        layers += [BasicBlock(planes, planes, 1) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)
