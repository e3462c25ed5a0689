"""PIRL-Jigsaw: tiles, the permutation and its inverse, the loss and its gradients."""

from __future__ import annotations

import pytest
import torch

from tests.methods.helpers import make_pirl as make
from tribyol.errors import ConfigError
from tribyol.methods.pirl_jigsaw import (
    from_tiles,
    invert_permutations,
    random_permutations,
    shuffle_tiles,
    to_tiles,
)


def numbered(b: int = 2, c: int = 1, size: int = 9) -> torch.Tensor:
    return torch.arange(b * c * size * size, dtype=torch.float32).view(b, c, size, size)


def test_tiles_are_cut_row_major_and_reassemble():
    x = numbered()
    tiles = to_tiles(x, 3)
    assert tiles.shape == (2, 9, 1, 3, 3)
    for k in range(9):
        r, c = divmod(k, 3)
        torch.testing.assert_close(tiles[:, k], x[:, :, 3 * r : 3 * r + 3, 3 * c : 3 * c + 3])
    torch.testing.assert_close(from_tiles(tiles, 3), x)


def test_tiles_take_the_centred_square_of_an_uneven_image():
    x = numbered(1, 1, 11)  # 3 tiles of 3 px, one px left over on each side
    torch.testing.assert_close(from_tiles(to_tiles(x, 3), 3), x[:, :, 1:10, 1:10])


def test_permutation_puts_tiles_where_it_says_and_inverts():
    x = numbered(b=4, c=2)
    tiles = to_tiles(x, 3)
    perm = random_permutations(4, 9, generator=torch.Generator().manual_seed(0))
    assert all(sorted(row.tolist()) == list(range(9)) for row in perm)
    shuffled = shuffle_tiles(tiles, perm)
    for b in range(4):
        for k in range(9):
            src = int(perm[b, k])
            r, c = divmod(src, 3)  # tile perm[b, k] came from grid cell (r, c)
            torch.testing.assert_close(shuffled[b, k], x[b, :, 3 * r : 3 * r + 3, 3 * c : 3 * c + 3])
    torch.testing.assert_close(shuffle_tiles(shuffled, invert_permutations(perm)), tiles)
    assert not torch.equal(shuffled, tiles)  # 4 identity draws out of 9! would be a miracle


def test_hand_permutation():
    tiles = torch.arange(3).view(1, 3, 1, 1, 1).float()  # tiles "0", "1", "2"
    perm = torch.tensor([[2, 0, 1]])
    assert shuffle_tiles(tiles, perm).flatten().tolist() == [2.0, 0.0, 1.0]
    assert invert_permutations(perm).tolist() == [[1, 2, 0]]


@pytest.mark.parametrize(("size", "tile"), [(16, 8), (28, 9), (48, 16)])
def test_small_tiles_are_resized_up(size, tile):
    m = make("pirl-jigsaw", min_tile_size=8)
    out = m.jigsaw(torch.randn(2, 1, size, size))
    assert out.shape == (2, 9, 1, tile, tile)


@pytest.mark.parametrize("bad", [{"grid": 1}, {"min_tile_size": 0}])
def test_bad_options(bad):
    with pytest.raises(ConfigError):
        make("pirl-jigsaw", **bad)
