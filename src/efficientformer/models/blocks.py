"""EfficientFormerV2 blocks (docs/model.md, Blocks): the one implementation used by the fixed models, the
supernet and the export path. Module and parameter names follow timm's tree so timm checkpoints
load with an identity key map.
"""

from __future__ import annotations

import torch
from torch import nn

from efficientformer.layers import ConvNorm, ConvNormAct, DropPath, LayerScale2d, RelPosBias, TalkingHead


def _fold_scale_into_conv(conv: nn.Conv2d, scale: torch.Tensor) -> None:
    """In place: make `conv(x)` return `conv(x) * scale` (scale per output channel, or a scalar)."""
    with torch.no_grad():
        scale = torch.as_tensor(scale, dtype=conv.weight.dtype, device=conv.weight.device)
        conv.weight.mul_(scale.reshape(-1, 1, 1, 1) if scale.ndim else scale)
        if conv.bias is not None:
            conv.bias.mul_(scale)


class Stem(nn.Module):
    """Two 3x3 stride-2 ConvNormAct layers: (B, in, H, W) -> (B, width, H/4, W/4)."""

    def __init__(self, in_chans: int, width: int) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(in_chans, width // 2, kernel_size=3, stride=2, padding=1)
        self.conv2 = ConvNormAct(width // 2, width, kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class Mlp(nn.Module):
    """Unified FFN: 1x1 expand -> depthwise 3x3 -> 1x1 project, each conv followed by BN (docs/model.md, Blocks)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.dim = dim
        self.hidden = hidden
        self.fc1 = ConvNormAct(dim, hidden, kernel_size=1)
        self.mid = ConvNormAct(hidden, hidden, kernel_size=3, groups=hidden)
        self.drop = nn.Dropout(drop)
        self.fc2 = ConvNorm(hidden, dim, kernel_size=1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in (self.fc1.conv, self.fc2.conv):
            nn.init.trunc_normal_(conv.weight, std=0.02)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mid(self.fc1(x))
        return self.drop(self.fc2(self.drop(x)))


class _ScaledAttention(RelPosBias):
    """Shared by both attentions: the softmax scale, which `fuse()` folds into the query projection."""

    scale: float

    def _scaled(self, logits: torch.Tensor) -> torch.Tensor:
        return logits if self.scale == 1.0 else logits * self.scale

    def _fold_scale(self, query_conv: nn.Conv2d) -> None:
        _fold_scale_into_conv(query_conv, torch.tensor(self.scale))
        self.scale = 1.0


class Attention2d(_ScaledAttention):
    """MHSA with talking heads, local value injection and a learned relative-position bias (docs/model.md, Blocks).

    With `stride=2` (stage 3) the input is first reduced by a depthwise stride-2 ConvNorm and the
    output upsampled x2 back (stride attention).

    Args:
        dim: input and output channels.
        grid: (rows, cols) of the input token grid the bias table is built for; other (even) grids
            work at run time with the table resampled to them.
        num_heads, key_dim, attn_ratio: heads, Q/K channels per head, V channels per head / key_dim.
        stride: 1, or 2 for stride attention.
    """

    def __init__(self, dim: int, grid: tuple[int, int], num_heads: int = 8, key_dim: int = 32,
                 attn_ratio: int = 4, stride: int = 1) -> None:
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = attn_ratio * key_dim
        self.scale = key_dim ** -0.5
        self.input_grid = (int(grid[0]), int(grid[1]))
        if stride == 2:
            if grid[0] % 2 or grid[1] % 2:
                raise ValueError(f"stride attention needs an even grid, got {grid[0]}x{grid[1]}")
            self.stride_conv = ConvNorm(dim, dim, kernel_size=3, stride=2, padding=1, groups=dim)
            self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            grid = (grid[0] // 2, grid[1] // 2)
        elif stride == 1:
            self.stride_conv = None
            self.upsample = None
        else:
            raise ValueError(f"Attention2d stride must be 1 or 2, got {stride}")
        self.init_rel_pos_bias(num_heads, grid)
        qk_channels = num_heads * key_dim
        v_channels = num_heads * self.value_dim
        self.q = ConvNorm(dim, qk_channels, kernel_size=1)
        self.k = ConvNorm(dim, qk_channels, kernel_size=1)
        self.v = ConvNorm(dim, v_channels, kernel_size=1)
        self.v_local = ConvNorm(v_channels, v_channels, kernel_size=3, groups=v_channels)
        self.talking_head1 = TalkingHead(num_heads)
        self.talking_head2 = TalkingHead(num_heads)
        self.act = nn.GELU()
        self.proj = ConvNorm(v_channels, dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride_conv is not None:
            x = self.stride_conv(x)
        batch = x.shape[0]
        rows, cols = self.token_grid(x)  # the built grid, or the input's (its bias is resampled)
        tokens = rows * cols
        # Channels are head-major: channel = head * dim_per_head + j.
        q = self.q(x).reshape(batch, self.num_heads, self.key_dim, tokens).transpose(2, 3)  # (B, h, N, kd)
        k = self.k(x).reshape(batch, self.num_heads, self.key_dim, tokens)  # (B, h, kd, N)
        v = self.v(x)
        v_local = self.v_local(v)
        v = v.reshape(batch, self.num_heads, self.value_dim, tokens)  # (B, h, d, N)
        attn = self._scaled(torch.matmul(q, k)) + self.get_attention_biases((rows, cols))  # (B, h, N, N)
        attn = self.talking_head1(attn).softmax(dim=-1)
        attn = self.talking_head2(attn)
        # (P.V)^T = V^T.P^T: the result is already channel-major, so the reshape below is a free view.
        out = torch.matmul(v, attn.transpose(2, 3))  # (B, h, d, N)
        out = out.reshape(batch, self.num_heads * self.value_dim, rows, cols) + v_local  # (B, h*d, n, n)
        if self.upsample is not None:
            if not torch.compiler.is_exporting():
                # Same values; torch's CPU bilinear kernel is much faster on channels-last input (README,
                # Inference speed). Not in an exported graph: there the copy is a node of its own (in
                # ExecuTorch it ends an XNNPACK delegate), and the runtimes choose their own layouts.
                out = out.contiguous(memory_format=torch.channels_last)
            out = self.upsample(out)
        return self.proj(self.act(out))

    def fuse(self) -> Attention2d:
        """Inference only (children already fused): fold the softmax scale into q, freeze the bias."""
        self._fold_scale(self.q)
        self.freeze_attention_biases()
        return self


class LocalGlobalQuery(nn.Module):
    """Query of the attention downsample: depthwise stride-2 conv + stride-2 subsampling, then 1x1 ConvNorm."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(kernel_size=1, stride=2, padding=0)
        self.local = nn.Conv2d(in_dim, in_dim, kernel_size=3, stride=2, padding=1, groups=in_dim)
        self.proj = ConvNorm(in_dim, out_dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.local(x) + self.pool(x))


class Attention2dDownsample(_ScaledAttention):
    """The attention path of dual-path downsampling: queries on the half grid attend to the full grid.

    See docs/model.md, Blocks.
    """

    def __init__(self, dim: int, out_dim: int, grid: tuple[int, int], num_heads: int = 8, key_dim: int = 16,
                 attn_ratio: int = 4) -> None:
        super().__init__()
        self.dim = dim
        self.out_dim = out_dim
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = attn_ratio * key_dim
        self.scale = key_dim ** -0.5
        self.input_grid = (int(grid[0]), int(grid[1]))
        self.init_rel_pos_bias(num_heads, grid, query_stride=2)
        qk_channels = num_heads * key_dim
        v_channels = num_heads * self.value_dim
        self.q = LocalGlobalQuery(dim, qk_channels)
        self.k = ConvNorm(dim, qk_channels, kernel_size=1)
        self.v = ConvNorm(dim, v_channels, kernel_size=1)
        self.v_local = ConvNorm(v_channels, v_channels, kernel_size=3, stride=2, padding=1, groups=v_channels)
        self.act = nn.GELU()
        self.proj = ConvNorm(v_channels, out_dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        grid = self.token_grid(x)  # keys on the input's grid; queries on its stride-2 subsampling
        tokens = grid[0] * grid[1]
        q_rows, q_cols = self.query_grid if grid == self.key_grid else self.query_grid_for(grid)
        q = self.q(x).reshape(batch, self.num_heads, self.key_dim, q_rows * q_cols).transpose(2, 3)  # (B, h, Nq, kd)
        k = self.k(x).reshape(batch, self.num_heads, self.key_dim, tokens)  # (B, h, kd, Nk)
        v = self.v(x)
        v_local = self.v_local(v)
        v = v.reshape(batch, self.num_heads, self.value_dim, tokens)  # (B, h, d, Nk)
        attn = (self._scaled(torch.matmul(q, k)) + self.get_attention_biases(grid)).softmax(dim=-1)  # (B, h, Nq, Nk)
        out = torch.matmul(v, attn.transpose(2, 3))  # (B, h, d, Nq), a free view of channel-major output
        out = out.reshape(batch, self.num_heads * self.value_dim, q_rows, q_cols) + v_local
        return self.proj(self.act(out))

    def fuse(self) -> Attention2dDownsample:
        """Inference only (children already fused): fold the softmax scale into the query, freeze the bias."""
        self._fold_scale(self.q.proj)
        self.freeze_attention_biases()
        return self


class Downsample(nn.Module):
    """3x3 stride-2 ConvNorm, plus an attention path when `attn` is given (dual-path, stage 3 -> 4)."""

    def __init__(self, in_dim: int, out_dim: int, attn: Attention2dDownsample | None = None) -> None:
        super().__init__()
        self.conv = ConvNorm(in_dim, out_dim, kernel_size=3, stride=2, padding=1)
        self.attn = attn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        if self.attn is not None:
            out = out + self.attn(x)
        return out


class Block(nn.Module):
    """`x + DropPath(ls1 * MHSA(x))` (attention blocks only), then `x + DropPath(ls2 * FFN(x))`."""

    def __init__(self, dim: int, mlp: Mlp, token_mixer: Attention2d | None = None, drop_path: float = 0.0,
                 layer_scale_init: float = 1e-5) -> None:
        super().__init__()
        self.token_mixer = token_mixer
        if token_mixer is not None:
            self.ls1 = LayerScale2d(dim, layer_scale_init)
            self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.mlp = mlp
        self.ls2 = LayerScale2d(dim, layer_scale_init)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.token_mixer is not None:
            x = x + self.drop_path1(self.ls1(self.token_mixer(x)))
        return x + self.drop_path2(self.ls2(self.mlp(x)))

    def fuse(self) -> Block:
        """Inference only (children already fused): fold the layer scales into the last convs."""
        if self.token_mixer is not None:
            _fold_scale_into_conv(self.token_mixer.proj, self.ls1.gamma)
            self.ls1 = nn.Identity()
            self.drop_path1 = nn.Identity()
        _fold_scale_into_conv(self.mlp.fc2, self.ls2.gamma)
        self.ls2 = nn.Identity()
        self.drop_path2 = nn.Identity()
        return self

