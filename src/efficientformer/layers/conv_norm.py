"""Conv2d followed by BatchNorm2d (and optionally an activation), foldable into one conv for inference."""

from __future__ import annotations

import torch
from torch import nn


def fold_bn_into_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Return a new conv equal to `bn(conv(x))` in eval mode (running statistics)."""
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode,
        device=conv.weight.device, dtype=conv.weight.dtype,
    )
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused.bias.copy_((conv_bias - bn.running_mean) * scale + bn.bias)
    return fused


class ConvNorm(nn.Module):
    """`bn(conv(x))`; `fuse()` returns the equivalent single conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
                 padding: int | None = None, groups: int = 1, bias: bool = True) -> None:
        super().__init__()
        if padding is None:
            padding = kernel_size // 2
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))

    def fuse(self) -> nn.Conv2d:
        """The BN folded into the conv (eval-mode statistics)."""
        return fold_bn_into_conv(self.conv, self.bn)


class ConvNormAct(ConvNorm):
    """`act(bn(conv(x)))` with exact (erf) GELU by default; `fuse()` returns `Sequential(conv, act)`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
                 padding: int | None = None, groups: int = 1, bias: bool = True,
                 act_layer: type[nn.Module] = nn.GELU) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, groups, bias)
        self.act = act_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    def fuse(self) -> nn.Sequential:
        """The BN folded into the conv, followed by the activation."""
        return nn.Sequential(super().fuse(), self.act)
