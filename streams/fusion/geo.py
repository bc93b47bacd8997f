"""Distances and the grid-cell spatial index of fusion.

A case is indexed under the cell of its centroid; a search visits every cell
whose square intersects the search radius.  Cells are ``cell_m`` metres high;
their width uses cos(30 deg), the middle of Zhejiang (27-31 deg N), so that
they are square to within 4 % over the province and the key of a point never
depends on anything but the point.
"""

from __future__ import annotations

import math

from gridhub.core.reference.geo import haversine_m

__all__ = ["cell_of", "cells_within", "haversine_m"]

M_PER_DEG_LAT = 111_320.0  # length of one degree of latitude (spherical Earth), metres
_COS_REF = math.cos(math.radians(30.0))  # Zhejiang's middle latitude (27-31 deg N)


def cell_of(lat: float, lng: float, cell_m: float) -> tuple[int, int]:
    return (math.floor(lng * M_PER_DEG_LAT * _COS_REF / cell_m), math.floor(lat * M_PER_DEG_LAT / cell_m))


def cells_within(lat: float, lng: float, radius_m: float, cell_m: float) -> list[tuple[int, int]]:
    """Every cell that can hold a point within ``radius_m`` of (lat, lng)."""
    cx, cy = cell_of(lat, lng, cell_m)
    # Away from 30 deg N a cell is up to ~4 % narrower in metres than cell_m: 0.95 covers it.
    rings = max(1, math.ceil(radius_m / (0.95 * cell_m)))
    return [(cx + dx, cy + dy) for dx in range(-rings, rings + 1) for dy in range(-rings, rings + 1)]
