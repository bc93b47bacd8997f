"""Coordinates: GCJ-02 <-> WGS-84, the Zhejiang bounding box, distances.

12345 work orders carry GCJ-02 coordinates (the "Mars" datum of Chinese
web maps), offset from WGS-84 by a few hundred metres (CONTRACTS.md 1.2).
The forward WGS-84 -> GCJ-02 transform is public (the Krasovsky-ellipsoid
formula every Chinese map SDK reproduces); the inverse has no closed form.
We use ``geocoordinates-rs`` (maintained, MIT/Apache, Rust core): its
``gcj02_to_wgs84_refined`` iterates the forward transform and reports its own
error bound (0.5 m), well inside the 5 m the fusion distances tolerate.
"""

from __future__ import annotations

import math

import geocoordinates_ffi as _gc

# Zhejiang spans 118°01'–123°10' E and 27°02'–31°11' N (浙江省人民政府, "浙江概况",
# zj.gov.cn).  Rounded outwards to 0.1° so coastal islands and border villages
# are inside; anything outside is a wrong datum, swapped axes or a placeholder.
ZHEJIANG_BBOX = (118.0, 27.0, 123.2, 31.2)  # (min_lng, min_lat, max_lng, max_lat)

EARTH_RADIUS_M = 6_371_008.8  # IUGG mean Earth radius, the usual haversine constant


def gcj02_to_wgs84(lng: float, lat: float) -> tuple[float, float]:
    """WGS-84 ``(lng, lat)`` of a GCJ-02 point (identity outside China, as the datum is)."""
    out = _gc.gcj02_to_wgs84_refined(_gc.Gcj02(lat=lat, lon=lng))
    return out.lon, out.lat


def wgs84_to_gcj02(lng: float, lat: float) -> tuple[float, float]:
    """GCJ-02 ``(lng, lat)`` of a WGS-84 point (used by tests and the simulator)."""
    out = _gc.wgs84_to_gcj02(_gc.Wgs84(lat=lat, lon=lng))
    return out.lon, out.lat


def in_zhejiang(lng: float, lat: float) -> bool:
    min_lng, min_lat, max_lng, max_lat = ZHEJIANG_BBOX
    return min_lng <= lng <= max_lng and min_lat <= lat <= max_lat


def haversine_m(*, lng1: float, lat1: float, lng2: float, lat2: float) -> float:
    """Great-circle distance in metres (spherical Earth: < 0.5 % error, fine at city scale).

    Keyword-only: (lng, lat) and (lat, lng) orders both live in this code base (GeoJSON vs the
    fusion grid), and a swapped pair is a silent error of hundreds of kilometres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))  # min: rounding may push a past 1
