"""The seed's conditional ResUNet (ResConvBlock, UnetDown, UnetUp, EmbedBlock, FusionBlock).

Shapes for a 28x28 input and width F (the seed's ``num_feat``):
  x (B,C,28,28) -> init_conv (F,28,28) -> down1 (F,14,14) -> down2 (2F,7,7) -> to_vec (2F,1,1)
  -> up0 (2F,7,7) -> up1 (F,14,14) -> up2 (F,28,28) -> out (C,28,28).
Capacity knob beyond width: ``blocks_per_level`` ResConvBlocks per down level (the seed: 1) and one
more per up level (the seed: 2). It adds depth without touching the 28 -> 14 -> 7 resolutions.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ddpm.config import ModelConfig

_INV_SQRT2 = 1.0 / math.sqrt(2.0)


class ResConvBlock(nn.Module):
    """Two 3x3 conv-BN-GELU layers with a residual connection, scaled by 1/sqrt(2) (the seed)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.same = in_channels == out_channels
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, 1, 1),
                                   nn.BatchNorm2d(out_channels), nn.GELU())
        self.conv2 = nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, 1, 1),
                                   nn.BatchNorm2d(out_channels), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.conv1(x)
        x2 = self.conv2(x1)
        return ((x if self.same else x1) + x2) * _INV_SQRT2


class UnetDown(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, blocks: int = 1):
        super().__init__()
        layers = [ResConvBlock(in_channels, out_channels)]
        layers += [ResConvBlock(out_channels, out_channels) for _ in range(blocks - 1)]
        self.model = nn.Sequential(*layers, nn.MaxPool2d(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class UnetUp(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, blocks: int = 2):
        super().__init__()
        self.model = nn.Sequential(nn.ConvTranspose2d(in_channels, out_channels, 2, 2),
                                   *[ResConvBlock(out_channels, out_channels) for _ in range(blocks)])

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.model(torch.cat((x, skip), 1))


class EmbedBlock(nn.Module):
    """Linear-GELU-Linear embedding of the time step t/T or of the (possibly null) one-hot condition."""

    def __init__(self, input_dim: int, emb_dim: int):
        super().__init__()
        self.input_dim = input_dim
        self.layers = nn.Sequential(nn.Linear(input_dim, emb_dim), nn.GELU(), nn.Linear(emb_dim, emb_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.view(-1, self.input_dim))


class FusionBlock(nn.Module):
    """Concatenate feature map, time and condition embeddings (broadcast over H, W), 1x1 conv-BN-GELU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1),
                                    nn.BatchNorm2d(out_channels), nn.GELU())

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        return self.layers(torch.cat([x, t.expand(-1, -1, h, w), c.expand(-1, -1, h, w)], dim=1))


class ConditionalUnet(nn.Module):
    """eps_theta(x_t, t/T, c): the seed's 2-down / 2-up conditional ResUNet."""

    def __init__(self, in_channels: int = 1, num_feat: int = 64, num_classes: int = 10,
                 blocks_per_level: int = 1, image_size: int = 28, freeze_embeddings: bool = False):
        super().__init__()
        # the names of ``model.*`` in the config; plain ints, so no state-dict key carries them
        self.in_channels, self.num_feat, self.num_classes = in_channels, num_feat, num_classes
        F, bottom = num_feat, image_size // 4
        self.timeembed1 = EmbedBlock(1, 2 * F)
        self.timeembed2 = EmbedBlock(1, F)
        self.conditionembed1 = EmbedBlock(num_classes, 2 * F)
        self.conditionembed2 = EmbedBlock(num_classes, F)
        self.init_conv = ResConvBlock(in_channels, F)
        self.downblock1 = UnetDown(F, F, blocks_per_level)
        self.downblock2 = UnetDown(F, 2 * F, blocks_per_level)
        self.to_vec = nn.Sequential(nn.AvgPool2d(bottom), nn.GELU())
        self.upblock0 = nn.Sequential(nn.ConvTranspose2d(2 * F, 2 * F, bottom, bottom),
                                      nn.GroupNorm(8, 2 * F), nn.ReLU())
        self.upblock1 = UnetUp(4 * F, F, blocks_per_level + 1)
        self.upblock2 = UnetUp(2 * F, F, blocks_per_level + 1)
        self.outblock = nn.Sequential(nn.Conv2d(2 * F, F, 3, 1, 1), nn.GroupNorm(8, F), nn.ReLU(),
                                      nn.Conv2d(F, in_channels, 3, 1, 1))
        self.fusion1 = FusionBlock(3 * F, F)
        self.fusion2 = FusionBlock(6 * F, 2 * F)
        self.fusion3 = FusionBlock(3 * F, F)
        self.fusion4 = FusionBlock(3 * F, F)
        if freeze_embeddings:  # the seed skeleton's quirk, kept as an option
            for emb in (self.timeembed1, self.timeembed2, self.conditionembed1, self.conditionembed2):
                emb.requires_grad_(False)

    @classmethod
    def from_config(cls, m: ModelConfig) -> "ConditionalUnet":
        return cls(m.in_channels, m.num_feat, m.num_classes, m.blocks_per_level, m.image_size,
                   m.freeze_embeddings)

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x: (B,C,H,W) noisy images; t: (B,) or (B,1) time as t/T in (0, 1]; c: (B, num_classes) one-hot or null."""
        temb1, temb2, cemb1, cemb2 = self._embeddings(x, t, c)
        down0 = self.init_conv(x)
        down1 = self.fusion1(self.downblock1(down0), temb2, cemb2)
        down2 = self.fusion2(self.downblock2(down1), temb1, cemb1)
        up0 = self.upblock0(self.to_vec(down2))
        up1 = self.fusion3(self.upblock1(up0, down2), temb2, cemb2)
        up2 = self.fusion4(self.upblock2(up1, down1), temb2, cemb2)
        return self.outblock(torch.cat((up2, down0), dim=1))

    def _embeddings(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Time and condition embeddings, computed in the parameters' dtype with autocast off: in bf16,
        t/T keeps only 328 of 400 distinct values at T=400 (506 of 1000 at T=1000), so neighbouring steps
        would share one embedding. Returned in the activation dtype (autocast's while it is on, else x's)."""
        F, dev = self.num_feat, x.device.type
        act = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype
        with torch.autocast(dev, enabled=False):
            dtype = self.timeembed1.layers[0].weight.dtype
            t, c = t.to(dtype).view(-1, 1), c.to(dtype)
            embs = (self.timeembed1(t).view(-1, 2 * F, 1, 1), self.timeembed2(t).view(-1, F, 1, 1),
                    self.conditionembed1(c).view(-1, 2 * F, 1, 1), self.conditionembed2(c).view(-1, F, 1, 1))
        return tuple(e.to(act) for e in embs)


def fold_batchnorm(net: nn.Module) -> nn.Module:
    """An eval-mode copy of ``net`` with each Conv2d -> BatchNorm2d pair folded into one Conv2d.

    In eval mode BatchNorm is the affine map (x - mean) / sqrt(var + eps) * gamma + beta with running
    statistics, so it folds exactly into the preceding convolution's weight and bias (up to float rounding:
    ~1e-6). Inference only: the copy must not be trained. A ``torch.compile`` wrapper is unwrapped first."""
    folded = copy.deepcopy(getattr(net, "_orig_mod", net)).eval()
    for module in folded.modules():
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                conv, bn = module[i], module[i + 1]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    module[i], module[i + 1] = fuse_conv_bn_eval(conv, bn), nn.Identity()
    return folded
