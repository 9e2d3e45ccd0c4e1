"""Tiny models referenced by tests as ``tiny_models:NAME`` factories."""

import torch
from torch import nn


class TinyMLP(nn.Module):
    input_shape = (1, 8, 8)

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


class TiedLM(nn.Module):
    """An embedding tied to the output projection, as in GPT-2/BERT: its weight must be counted once."""

    input_shape = (4,)

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.out = nn.Linear(8, 50, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, x):
        return self.out(self.embed(x.long().clamp(0, 49)))


def tiny_mlp():
    torch.manual_seed(0)
    return TinyMLP()


def tied_lm():
    return TiedLM()


def no_shape():
    return nn.Sequential(nn.Linear(4, 2))


def broken():
    raise RuntimeError("weights server unreachable")


def not_a_module():
    return {"weights": 1}
