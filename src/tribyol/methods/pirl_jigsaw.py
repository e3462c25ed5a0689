"""PIRL-Jigsaw (Misra & van der Maaten, CVPR 2020): PIRL with the jigsaw transform.

``g`` embeds a view's ``grid`` x ``grid`` tiles, shuffled per image, through the shared encoder
and a per-tile head; the loss is PIRL's (``pirl.PIRLBase``). Small tiles: docs/methods.md#pirl.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tribyol.config.fields import at_least, option
from tribyol.methods.base import MethodContext, method_name
from tribyol.methods.pirl import PIRLBase, PIRLOptions
from tribyol.methods.registry import register


def to_tiles(x: Tensor, grid: int) -> Tensor:
    """``[B, C, H, W]`` -> ``[B, grid*grid, C, t, t]``, tile ``k`` at row ``k // grid``, column
    ``k % grid`` of the centred ``grid*t`` square, ``t = min(H, W) // grid``."""
    b, c, h, w = x.shape
    t = min(h, w) // grid
    if t < 1:
        raise ValueError(f"a {h}x{w} image cannot be cut into {grid}x{grid} tiles")
    top, left = (h - grid * t) // 2, (w - grid * t) // 2
    x = x[:, :, top : top + grid * t, left : left + grid * t]
    x = x.reshape(b, c, grid, t, grid, t).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, grid * grid, c, t, t)


def from_tiles(tiles: Tensor, grid: int) -> Tensor:
    """The inverse of ``to_tiles``: ``[B, grid*grid, C, t, t]`` -> ``[B, C, grid*t, grid*t]``."""
    b, _, c, t, _ = tiles.shape
    x = tiles.reshape(b, grid, grid, c, t, t).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c, grid * t, grid * t)


def random_permutations(batch: int, n: int, device: torch.device | str = "cpu",
                        generator: torch.Generator | None = None) -> Tensor:
    """``[batch, n]``: an independent uniform permutation of ``range(n)`` per row."""
    return torch.rand(batch, n, device=device, generator=generator).argsort(dim=1)


def shuffle_tiles(tiles: Tensor, perm: Tensor) -> Tensor:
    """Position ``k`` of image ``b`` receives tile ``perm[b, k]``: ``out[b, k] = tiles[b, perm[b, k]]``."""
    rows = torch.arange(tiles.shape[0], device=tiles.device).unsqueeze(1)
    return tiles[rows, perm]


def invert_permutations(perm: Tensor) -> Tensor:
    """Per row, the permutation that undoes ``perm`` under ``shuffle_tiles``."""
    return perm.argsort(dim=1)


@register
class PIRLJigsaw(PIRLBase):
    name = "pirl-jigsaw"

    @dataclass
    class Options(PIRLOptions):
        name: str = method_name("pirl-jigsaw")
        grid: int = option(3, "tiles per side (PIRL: 3x3)", rule=at_least(2))
        min_tile_size: int = option(8, "tiles smaller than this (px) are resized up to it",
                                    rule=at_least(1))

    def __init__(self, ctx: MethodContext, options: Options) -> None:
        super().__init__(ctx, options)
        if ctx.image_size // options.grid < 1:
            raise ValueError(f"{ctx.image_size} px views cannot be cut into {options.grid}^2 tiles")
        n = options.grid**2
        self.tile_head = nn.Linear(ctx.backbone.out_dim, ctx.proj_dim)
        self.combine = nn.Linear(n * ctx.proj_dim, ctx.proj_dim)

    def jigsaw(self, view: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Tiles of ``view`` shuffled per image, resized to the tile size: ``[B, n, C, s, s]``."""
        grid = self.options.grid
        tiles = to_tiles(view, grid)
        b, n, c, t, _ = tiles.shape
        device = generator.device if generator is not None else view.device
        perm = random_permutations(b, n, device, generator).to(view.device)
        tiles = shuffle_tiles(tiles, perm)
        size = max(self.options.min_tile_size, t)
        if size != t:
            flat = F.interpolate(tiles.reshape(b * n, c, t, t), size=(size, size),
                                 mode="bilinear", align_corners=False)
            tiles = flat.reshape(b, n, c, size, size)
        return tiles

    def transformed_embedding(self, view: Tensor, generator: torch.Generator | None = None) -> Tensor:
        tiles = self.jigsaw(view, generator)
        b, n = tiles.shape[:2]
        codes = self.tile_head(self.backbone(tiles.flatten(0, 1)))  # all tiles in one batch
        return self.combine(codes.reshape(b, n * codes.shape[-1]))
