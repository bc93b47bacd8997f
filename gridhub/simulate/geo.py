"""Coordinates for the simulator: metre offsets and the forward GCJ-02 transform.

12345 work orders carry GCJ-02 coordinates (CONTRACTS 1.2): the hotline
operator geocodes with a Chinese web map, which shifts WGS-84 by a few
hundred metres.  The simulator knows the true WGS-84 position of every
incident and must deliver what the operator's map would have shown, so it
applies the *forward* transform here.  The hub itself needs the inverse
(normalize stage, ``streams/ingest/``); this module is kept independent of it
so the simulator does not import the stream processors.

The formula is the widely published reverse-engineered GCJ-02 ("Mars
coordinates") obfuscation; its constants are those of the Krasovsky 1940
ellipsoid the original uses.
"""

from __future__ import annotations

import math

# Krasovsky 1940 ellipsoid: semi-major axis (m) and first eccentricity squared.
_A = 6378245.0
_EE = 0.00669342162296594323
# Mean Earth radius (m), IUGG, for small offsets and distances.
EARTH_RADIUS_M = 6371008.8


def _transform_lat(x: float, y: float) -> float:
    ret = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    ret += (160.0 * math.sin(y / 12.0 * math.pi) + 320.0 * math.sin(y * math.pi / 30.0)) * 2.0 / 3.0
    return ret


def _transform_lng(x: float, y: float) -> float:
    ret = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    ret += (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    return ret


def wgs84_to_gcj02(lng: float, lat: float) -> tuple[float, float]:
    """Forward GCJ-02: what a Chinese web map shows for a true WGS-84 point (inside China)."""
    dlat = _transform_lat(lng - 105.0, lat - 35.0)
    dlng = _transform_lng(lng - 105.0, lat - 35.0)
    radlat = lat / 180.0 * math.pi
    magic = math.sin(radlat)
    magic = 1 - _EE * magic * magic
    sqrtmagic = math.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1 - _EE)) / (magic * sqrtmagic) * math.pi)
    dlng = (dlng * 180.0) / (_A / sqrtmagic * math.cos(radlat) * math.pi)
    return lng + dlng, lat + dlat


def offset(lng: float, lat: float, east_m: float, north_m: float) -> tuple[float, float]:
    """The point ``east_m`` / ``north_m`` metres from (lng, lat) (flat-earth; fine below ~50 km)."""
    dlat = north_m / EARTH_RADIUS_M * 180.0 / math.pi
    dlng = east_m / (EARTH_RADIUS_M * math.cos(math.radians(lat))) * 180.0 / math.pi
    return lng + dlng, lat + dlat


def distance_m(lng1: float, lat1: float, lng2: float, lat2: float) -> float:
    """Great-circle (haversine) distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(h))
