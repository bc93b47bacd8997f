"""GCJ-02 <-> WGS-84 against published pairs and an independent forward formula; bbox; haversine."""

from __future__ import annotations

import math

import pytest

from gridhub.core.reference.geo import ZHEJIANG_BBOX, gcj02_to_wgs84, haversine_m, in_zhejiang, wgs84_to_gcj02

# (wgs_lng, wgs_lat, gcj_lng, gcj_lat) published by two independent projects:
PUBLISHED = [
    (121.5272106, 31.1774276, 121.531541859215, 31.17530398364597),     # Shanghai, eviltransform tests
    (113.912316, 22.543847, 113.9171764808363, 22.540796131694766),     # Shenzhen, eviltransform tests
    (116.377817, 39.911954, 116.38404722455657, 39.91334545536069),     # Beijing, eviltransform tests
    (116.404, 39.915, 116.41024449916938, 39.91640428150164),           # Beijing, wandergis/coordtransform
]


def _distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Metres between two (lng, lat) points."""
    return haversine_m(lng1=a[0], lat1=a[1], lng2=b[0], lat2=b[1])


def _forward(lng: float, lat: float) -> tuple[float, float]:
    """The standard WGS-84 -> GCJ-02 formula (Krasovsky 1940 ellipsoid), written independently."""
    a, ee = 6378245.0, 0.00669342162296594323
    x, y = lng - 105.0, lat - 35.0
    dlat = (-100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
            + (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
            + (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
            + (160.0 * math.sin(y / 12.0 * math.pi) + 320 * math.sin(y * math.pi / 30.0)) * 2.0 / 3.0)
    dlng = (300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
            + (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
            + (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
            + (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0)
    radlat = lat / 180.0 * math.pi
    magic = 1 - ee * math.sin(radlat) ** 2
    dlat = (dlat * 180.0) / ((a * (1 - ee)) / (magic * math.sqrt(magic)) * math.pi)
    dlng = (dlng * 180.0) / (a / math.sqrt(magic) * math.cos(radlat) * math.pi)
    return lng + dlng, lat + dlat


@pytest.mark.parametrize("wgs_lng,wgs_lat,gcj_lng,gcj_lat", PUBLISHED)
def test_published_pairs(wgs_lng: float, wgs_lat: float, gcj_lng: float, gcj_lat: float) -> None:
    lng, lat = wgs84_to_gcj02(wgs_lng, wgs_lat)
    assert haversine_m(lng1=lng, lat1=lat, lng2=gcj_lng, lat2=gcj_lat) < 0.01
    lng, lat = gcj02_to_wgs84(gcj_lng, gcj_lat)
    assert haversine_m(lng1=lng, lat1=lat, lng2=wgs_lng, lat2=wgs_lat) < 5.0


def _zhejiang_grid() -> list[tuple[float, float]]:
    min_lng, min_lat, max_lng, max_lat = ZHEJIANG_BBOX
    steps = 12
    return [(min_lng + (max_lng - min_lng) * i / steps, min_lat + (max_lat - min_lat) * j / steps)
            for i in range(steps + 1) for j in range(steps + 1)]


def test_forward_matches_the_standard_formula_over_zhejiang() -> None:
    for lng, lat in _zhejiang_grid():
        assert _distance(wgs84_to_gcj02(lng, lat), _forward(lng, lat)) < 0.01


def test_inverse_round_trips_within_5_m_over_zhejiang() -> None:
    worst = 0.0
    for lng, lat in _zhejiang_grid():
        gcj = _forward(lng, lat)
        offset = haversine_m(lng1=lng, lat1=lat, lng2=gcj[0], lat2=gcj[1])
        assert 100 < offset < 1000, "GCJ-02 shifts Zhejiang by a few hundred metres"
        worst = max(worst, _distance(gcj02_to_wgs84(*gcj), (lng, lat)))
    assert worst < 5.0


def test_bbox() -> None:
    assert in_zhejiang(120.15, 30.27)       # Hangzhou
    assert in_zhejiang(122.2, 30.0)         # Zhoushan islands
    assert not in_zhejiang(121.47, 31.23)   # Shanghai city centre
    assert not in_zhejiang(30.27, 120.15)   # swapped axes
    assert not in_zhejiang(0.0, 0.0)


def test_haversine_one_degree_of_latitude() -> None:
    assert haversine_m(lng1=120.0, lat1=30.0, lng2=120.0, lat2=31.0) == pytest.approx(111_195, rel=1e-3)
