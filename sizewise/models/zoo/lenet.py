"""LeNet-300-100 and LeNet-5 as Han et al. (2015, Deep Compression) used them, from Caffe's MNIST examples.

LeNet-5 here is Caffe's variant (20 and 50 filters, 500 hidden units, max-pooling, ReLU) rather than LeCun's 1998
original, because that is the network whose 1,720 KB / 431K parameters the Deep Compression tables report.
"""

from __future__ import annotations

import torch
from torch import nn


class LeNet300100(nn.Module):
    """784-300-100-10 MLP: 266,610 parameters (1,070 KB at fp32 in Han et al.'s Table 2)."""

    input_shape = (1, 28, 28)

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


class LeNet5(nn.Module):
    """conv(20,5x5)-pool-conv(50,5x5)-pool-fc500-fc10: 431,080 parameters (1,720 KB in Han et al.'s Table 3)."""

    input_shape = (1, 28, 28)

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, kernel_size=5)
        self.conv2 = nn.Conv2d(20, 50, kernel_size=5)
        self.fc1 = nn.Linear(50 * 4 * 4, 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(self.conv1(x), 2)
        x = torch.max_pool2d(self.conv2(x), 2)
        x = torch.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)
