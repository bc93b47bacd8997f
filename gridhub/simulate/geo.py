"""Coordinates for the simulator: metre offsets, distances and the forward GCJ-02 transform.

12345 work orders carry GCJ-02 coordinates (CONTRACTS 1.2): the hotline
operator geocodes with a Chinese web map, which shifts WGS-84 by a few
hundred metres.  The simulator knows the true WGS-84 position of every
incident and delivers what the operator's map would have shown.  The
transform is the one the ingest stage uses for the inverse
(:mod:`gridhub.core.reference.geo`), so the simulator and the hub agree on the datum;
``tests/gridhub/simulate`` checks it against the published reference value.
"""

from __future__ import annotations

import math

from gridhub.core.reference.geo import EARTH_RADIUS_M, haversine_m, wgs84_to_gcj02

__all__ = ["EARTH_RADIUS_M", "haversine_m", "offset", "wgs84_to_gcj02"]


def offset(lng: float, lat: float, east_m: float, north_m: float) -> tuple[float, float]:
    """The point ``east_m`` / ``north_m`` metres from (lng, lat) (flat-earth; fine below ~50 km)."""
    dlat = north_m / EARTH_RADIUS_M * 180.0 / math.pi
    dlng = east_m / (EARTH_RADIUS_M * math.cos(math.radians(lat))) * 180.0 / math.pi
    return lng + dlng, lat + dlat

