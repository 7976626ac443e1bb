"""The grid pointing game (Böhle et al., "Convolutional Dynamic Alignment Networks", CVPR 2021;
Rao et al., "Towards Better Understanding Attribution Methods", CVPR 2022).

On a mosaic of images of different classes (:mod:`bench.data.mosaic`) the truth for a target
is the square of its tile, by construction. The grid pointing score is the target tile's share
of the map's positive attribution: positive mass in the tile / total positive mass. That is
mass accuracy (:func:`bench.metrics.pointing.energy_pointing_game`) with the tile as the mask, and
it is computed by that very function; this module only registers it as an alias under the name
the literature uses, so a leaderboard column says what it measures. Conventions are mass accuracy's: NaN for a map with
no positive mass or holding NaN/Inf; a uniform positive map on a g x g grid of equal tiles
scores exactly 1/g^2; a map that is positive on the target tile only scores exactly 1.
"""

from __future__ import annotations

from bench.metrics import pointing  # noqa: F401  (energy_pointing_game is registered first)
from bench.metrics.base import register_alias

register_alias(
    "grid_pointing",
    of="energy_pointing_game",
    description="grid pointing game: positive mass in the target tile / total (mass accuracy on the tile)",
)
