"""The same CIFAR ResNet as ``bnlib.models.cifar_resnet``, in PyTorch, for the speed comparison.

Optional: used by ``bench_step.py --variants ...,torch-bn,torch-full`` when PyTorch is installed
(CPU build: ``pip install torch --index-url https://download.pytorch.org/whl/cpu``).  Not part of
bnlib; it exists only so that the benchmark can put a PyTorch step beside a TensorFlow one.

Same layers as bnlib's model: 3x3 stem conv (16k filters) + BN + ReLU; three stages of n basic
blocks (conv-BN-ReLU-conv-BN, plus a 1x1 conv + BN projection where the shape changes, add, ReLU);
global average pooling; a dense classifier; convolutions without bias; BN momentum 0.1 in
PyTorch's convention (Keras' 0.9).  ``parameter_count`` lets the benchmark assert that both
networks have the same number of parameters.
"""
from __future__ import annotations

import torch
from torch import nn

from bnlib.names import check_resnet_depth, parse_name


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out, momentum=0.1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out, momentum=0.1)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, 0, bias=False), nn.BatchNorm2d(c_out, momentum=0.1)
            )

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth: int, width: int = 1, num_classes: int = 10):
        super().__init__()
        n = check_resnet_depth(depth)
        c = 16 * width
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c, momentum=0.1),
                                  nn.ReLU())
        blocks = []
        c_in = c
        for stage, c_out in enumerate((c, 2 * c, 4 * c)):
            for block in range(n):
                blocks.append(BasicBlock(c_in, c_out, 2 if stage > 0 and block == 0 else 1))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.output = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.output(x.mean(dim=(2, 3)))


def build(name: str, policy: str) -> CifarResNet:
    """``name`` as in bnlib (resnet20, wrn14-2, ...); ``policy`` 'bn' (γ, β only) or 'all'."""
    family, depth, width = parse_name(name)
    if family not in ("resnet", "wrn"):
        raise ValueError(f"the PyTorch comparison has CIFAR ResNets only (resnet20, wrn14-2), not {name!r}")
    model = CifarResNet(depth, width)
    if policy == "bn":
        for module in model.modules():
            if not isinstance(module, nn.BatchNorm2d):
                for p in module.parameters(recurse=False):
                    p.requires_grad_(False)
    elif policy != "all":
        raise ValueError(f"policy must be 'bn' or 'all', not {policy!r}")
    return model.train()


def parameter_count(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class Stepper:
    """One SGD (momentum 0.9) training step on a fixed batch, like Keras' ``train_on_batch``."""

    def __init__(self, model: nn.Module, x, y, channels_last: bool = False):
        self.model = model
        self.x = torch.as_tensor(x).permute(0, 3, 1, 2).contiguous()  # NHWC (TF) -> NCHW
        self.y = torch.as_tensor(y).long()
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad],
                                         lr=0.1, momentum=0.9)
        self.loss = nn.CrossEntropyLoss()

    def __call__(self) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(self.model(self.x), self.y)
        loss.backward()
        self.optimizer.step()
        return loss.item()
