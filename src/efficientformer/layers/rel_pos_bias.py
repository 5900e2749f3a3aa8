"""Learned relative-position bias over a 2-D token grid, with a gathered-bias cache that cannot go stale."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def relative_position_index(key_grid: tuple[int, int], query_stride: int = 1) -> torch.Tensor:
    """Index into a (r0*r1)-entry bias table for every (query, key) pair.

    Keys sit on the full `key_grid` (r0, r1); queries on the same grid subsampled by `query_stride`,
    so query (i, j) sits at key coordinates (s*i, s*j). The entry used is `|dr| * r1 + |dc|`
    (docs/model.md, Relative-position bias: equal to the official first-appearance enumeration of offsets).

    Returns:
        int64 tensor of shape (Nq, Nk), Nq = ceil(r0/s) * ceil(r1/s), Nk = r0 * r1.
    """
    rows, cols = key_grid
    key_pos = torch.stack(torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")).flatten(1)  # (2, Nk)
    query_pos = torch.stack(torch.meshgrid(torch.arange(0, rows, query_stride), torch.arange(0, cols, query_stride),
                                           indexing="ij")).flatten(1)  # (2, Nq)
    offsets = (query_pos[:, :, None] - key_pos[:, None, :]).abs()  # (2, Nq, Nk)
    return offsets[0] * cols + offsets[1]


def resample_bias_table(table: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]) -> torch.Tensor:
    """Resize a (heads, r0*r1) table, viewed per head as an r0 x r1 image of |offsets|, bicubically
    (docs/checkpoints.md, "Another resolution")."""
    heads, entries = table.shape
    if entries != old_grid[0] * old_grid[1]:
        raise ValueError(f"bias table has {entries} entries per head, expected {old_grid[0]}x{old_grid[1]}")
    if tuple(old_grid) == tuple(new_grid):
        return table.clone()
    image = table.reshape(1, heads, old_grid[0], old_grid[1]).float()  # (1, H, r0, r1)
    resized = F.interpolate(image, size=tuple(new_grid), mode="bicubic", align_corners=False)
    return resized.reshape(heads, new_grid[0] * new_grid[1]).to(table.dtype)


MAX_CACHED_GRIDS = 8


class RelPosBias(nn.Module):
    """Base for attention modules that add a learned relative-position bias to their logits.

    Subclasses call `init_rel_pos_bias`, which registers `attention_biases` (heads, r0*r1) and the
    non-persistent index buffer `attention_bias_idxs` directly on the module, so the parameter keeps
    the name the reference checkpoints use. `get_attention_biases(grid)` returns the gathered
    (H, Nq, Nk) bias for keys on `grid`: the built `key_grid` by default; any other grid gets the
    table resampled with `resample_bias_table`, the function checkpoint loading uses, so running
    at a new size equals loading the weights into a model built for it.

    In eval mode with no gradient wanted the result is cached per grid, keyed on the table's
    storage, device, dtype and in-place version counter, so a `load_state_dict`, `.to()`,
    optimizer step or `train()`/`eval()` switch can never serve a stale bias.
    """

    attention_biases: nn.Parameter
    attention_bias_idxs: torch.Tensor

    def init_rel_pos_bias(self, num_heads: int, key_grid: tuple[int, int], query_stride: int = 1) -> None:
        """Create the table for keys on `key_grid` and queries subsampled by `query_stride`."""
        self.key_grid = (int(key_grid[0]), int(key_grid[1]))
        self.query_stride = query_stride
        self.query_grid = self.query_grid_for(self.key_grid)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, self.key_grid[0] * self.key_grid[1]))
        self.register_buffer("attention_bias_idxs", relative_position_index(self.key_grid, query_stride),
                             persistent=False)
        self._bias_cache: dict[tuple[int, int], tuple[tuple, torch.Tensor]] | None = None
        self._index_cache: dict[tuple[int, int], torch.Tensor] = {}

    def query_grid_for(self, key_grid: tuple[int, int]) -> tuple[int, int]:
        """Query grid for keys on `key_grid`: each side ceil(n / query_stride)."""
        return -(-key_grid[0] // self.query_stride), -(-key_grid[1] // self.query_stride)

    def token_grid(self, x: torch.Tensor) -> tuple[int, int]:
        """The key grid of a (B, C, rows, cols) map: the built grid (plain ints) when it matches, else its own."""
        rows, cols = x.shape[-2:]
        if (rows, cols) == self.key_grid:
            return self.key_grid
        return int(rows), int(cols)

    def _cache_key(self, grid: tuple[int, int]) -> tuple:
        table, idxs = self.attention_biases, self.attention_bias_idxs
        return (grid, table.data_ptr(), table.device, table.dtype, table._version, idxs.data_ptr(), idxs._version)

    def _index(self, grid: tuple[int, int]) -> torch.Tensor:
        """Index of `grid` (the registered buffer for the built grid), kept per grid on the table's device."""
        if grid == self.key_grid:
            return self.attention_bias_idxs
        index = self._index_cache.get(grid)
        if index is None or index.device != self.attention_biases.device:
            index = relative_position_index(grid, self.query_stride).to(self.attention_biases.device)
            self._index_cache[grid] = index
        return index

    def _gather(self, grid: tuple[int, int]) -> torch.Tensor:
        table = self.attention_biases
        if grid != self.key_grid:
            table = resample_bias_table(table, self.key_grid, grid)  # (H, g0*g1)
        return table[:, self._index(grid)]  # (H, Nq, Nk)

    def get_attention_biases(self, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """The gathered bias of shape (heads, Nq, Nk) for keys on `grid` (default: the built key grid)."""
        grid = self.key_grid if grid is None else (int(grid[0]), int(grid[1]))
        if "attention_bias_frozen" in self._buffers:
            if grid != self.key_grid:
                raise ValueError(f"this attention was fused with its bias frozen for a {self.key_grid[0]}x"
                                 f"{self.key_grid[1]} key grid and cannot run on {grid[0]}x{grid[1]}")
            return self.attention_bias_frozen
        table = self.attention_biases
        cacheable = not self.training and not (torch.is_grad_enabled() and table.requires_grad)
        if cacheable and not torch.jit.is_tracing() and not torch.compiler.is_compiling():
            key = self._cache_key(grid)
            cache = self._bias_cache if self._bias_cache is not None else {}
            entry = cache.get(grid)
            if entry is None or entry[0] != key:
                if grid not in cache and len(cache) >= MAX_CACHED_GRIDS:
                    del cache[next(iter(cache))]
                entry = cache[grid] = (key, self._gather(grid))
            self._bias_cache = cache
            return entry[1]
        return self._gather(grid)

    def freeze_attention_biases(self) -> None:
        """Inference only: replace the table and index by the gathered bias as a constant buffer.

        The frozen module runs only on its built key grid.
        """
        with torch.no_grad():
            frozen = self.attention_biases[:, self.attention_bias_idxs].clone()  # (H, Nq, Nk)
        del self.attention_biases
        del self.attention_bias_idxs
        self.register_buffer("attention_bias_frozen", frozen)
        self._bias_cache = None
        self._index_cache = {}

    @property
    def bias_frozen(self) -> bool:
        """Whether `freeze_attention_biases` has run (the module is fused)."""
        return "attention_bias_frozen" in self._buffers

    def train(self, mode: bool = True) -> RelPosBias:
        self._bias_cache = None
        return super().train(mode)

    def _apply(self, fn, recurse: bool = True):
        self._bias_cache = None
        self._index_cache = {}
        return super()._apply(fn, recurse)
