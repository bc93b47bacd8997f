"""The simulated geography: real Zhejiang division codes, synthetic positions.

Codes and names come from the shipped reference tables
(``gridhub/core/reference/data``), so every township belongs to its county and every
village to its township.  The reference tables carry no coordinates, so
positions are synthetic but stable: each county has an approximate real
centroid (below), each township sits at a deterministic spot within the
county's radius, each village within ~1.5 km of its township.  That is enough
for fusion, which only compares positions with each other.
"""

from __future__ import annotations

import csv
import hashlib
import random
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from gridhub.simulate.geo import offset
from gridhub.core.reference import DATA_DIR

REFERENCE_DIR = DATA_DIR

#: Approximate WGS-84 centroids of the built-up core of the simulated counties
#: (read off a map, to ~2 km) and the radius (m) within which their townships
#: are placed: ~6 km for urban districts, ~12 km for county-level cities.
COUNTY_CENTRES: dict[str, tuple[float, float, float]] = {
    "330102": (120.169, 30.242, 5000),   # 杭州 上城区
    "330106": (120.110, 30.255, 6000),   # 杭州 西湖区
    "330110": (119.985, 30.330, 9000),   # 杭州 余杭区
    "330203": (121.550, 29.870, 6000),   # 宁波 海曙区
    "330212": (121.600, 29.820, 9000),   # 宁波 鄞州区
    "330302": (120.655, 28.010, 6000),   # 温州 鹿城区
    "330381": (120.650, 27.780, 12000),  # 温州 瑞安市
    "330402": (120.780, 30.750, 7000),   # 嘉兴 南湖区
    "330483": (120.560, 30.630, 12000),  # 嘉兴 桐乡市
    "330502": (120.090, 30.870, 7000),   # 湖州 吴兴区
    "330503": (120.300, 30.850, 10000),  # 湖州 南浔区
    "330521": (120.090, 30.540, 12000),  # 湖州 德清县
    "330602": (120.580, 30.000, 6000),   # 绍兴 越城区
    "330603": (120.490, 30.090, 9000),   # 绍兴 柯桥区
    "330702": (119.650, 29.080, 8000),   # 金华 婺城区
    "330782": (120.070, 29.310, 12000),  # 金华 义乌市
    "330802": (118.870, 28.940, 6000),   # 衢州 柯城区
    "330902": (122.100, 30.020, 7000),   # 舟山 定海区
    "331002": (121.440, 28.680, 7000),   # 台州 椒江区
    "331081": (121.380, 28.370, 12000),  # 台州 温岭市
    "331102": (119.920, 28.450, 8000),   # 丽水 莲都区
}

# Common Chinese road-name stems; each township gets its own deterministic subset.
_ROAD_STEMS = (
    "人民", "解放", "中山", "建设", "青年", "文化", "新华", "朝阳", "凤凰", "红旗", "健康", "学士",
    "劳动", "府前", "工业", "环城东", "环城西", "湖滨", "滨河", "振兴", "友谊", "和平", "胜利", "金融",
    "迎宾", "光明", "东风", "春晖", "南湖", "西山", "望江", "临江", "兴业", "创业", "科技", "育才",
    "长兴", "龙泉", "月河", "百花", "香樟", "银杏", "丁香", "桂花", "丰收", "长安", "永安", "太平",
)
_ROAD_SUFFIX = ("路", "路", "路", "街", "大道", "巷", "弄")
_LANDMARK_KINDS = (
    "农贸市场", "菜场", "小学", "中学", "幼儿园", "人民医院", "社区卫生服务中心", "公交站", "公园", "广场",
    "超市", "加油站", "汽车站", "体育馆", "图书馆", "派出所", "银行", "商业街", "酒店", "停车场",
)
_ESTATE_WORDS = ("花园", "小区", "新村", "公寓", "家园", "苑", "嘉园", "名邸", "华庭", "锦苑")
_ESTATE_STEMS = ("金色", "阳光", "碧水", "东方", "翠苑", "丽都", "香樟", "紫金", "海棠", "锦绣", "和园",
                 "春江", "绿城", "世纪", "景湖", "云栖", "星河", "银泰", "城南", "城北")


def _stable_rng(*parts: str) -> random.Random:
    """A Random seeded by the text of ``parts``: the same place is always at the same spot."""
    digest = hashlib.sha256("|".join(parts).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


@dataclass(frozen=True)
class Village:
    code: str
    name: str
    lng: float
    lat: float


@dataclass(frozen=True)
class Township:
    code: str
    name: str
    county_code: str
    lng: float
    lat: float
    roads: tuple[str, ...]
    landmarks: tuple[str, ...]
    estates: tuple[str, ...]
    villages: tuple[Village, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class County:
    code: str
    name: str
    city_name: str
    lng: float
    lat: float
    townships: tuple[Township, ...]


def _read(name: str) -> list[dict[str, str]]:
    with (REFERENCE_DIR / name).open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@lru_cache(maxsize=1)
def reference_codes() -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(counties code->name, townships code->county code, villages code->township code) of all Zhejiang."""
    counties = {r["code"]: r["name"] for r in _read("counties.csv")}
    townships = {r["code"]: r["areaCode"] for r in _read("townships.csv")}
    villages = {r["code"]: r["streetCode"] for r in _read("villages.csv")}
    return counties, townships, villages


@lru_cache(maxsize=4)
def load_world(county_codes: tuple[str, ...] | None = None) -> tuple[County, ...]:
    """The simulated counties (default: every county of :data:`COUNTY_CENTRES`)."""
    wanted = tuple(county_codes or COUNTY_CENTRES)
    unknown = [c for c in wanted if c not in COUNTY_CENTRES]
    if unknown:
        raise ValueError(f"no simulated geography for county codes {unknown}; known: {sorted(COUNTY_CENTRES)}")
    cities = {r["code"]: r["name"] for r in _read("cities.csv")}
    counties = {r["code"]: r for r in _read("counties.csv")}
    towns_by_county: dict[str, list[dict[str, str]]] = {}
    for row in _read("townships.csv"):
        towns_by_county.setdefault(row["areaCode"], []).append(row)
    villages_by_town: dict[str, list[dict[str, str]]] = {}
    wanted_set = set(wanted)
    for row in _read("villages.csv"):
        if row["areaCode"] in wanted_set:
            villages_by_town.setdefault(row["streetCode"], []).append(row)

    out: list[County] = []
    for code in wanted:
        clng, clat, radius = COUNTY_CENTRES[code]
        towns: list[Township] = []
        for t in towns_by_county.get(code, []):
            rng = _stable_rng("town", t["code"])
            # Inside the county's radius, denser near the centre (sqrt gives uniform area; keep it central).
            tlng, tlat = offset(clng, clat, rng.uniform(-radius, radius) * 0.8, rng.uniform(-radius, radius) * 0.8)
            roads = tuple(dict.fromkeys(rng.choice(_ROAD_STEMS) + rng.choice(_ROAD_SUFFIX) for _ in range(8)))
            short = t["name"].removesuffix("街道").removesuffix("镇").removesuffix("乡")
            landmarks = tuple(dict.fromkeys(
                (short if rng.random() < 0.5 else rng.choice(_ROAD_STEMS)) + rng.choice(_LANDMARK_KINDS)
                for _ in range(8)))
            estates = tuple(dict.fromkeys(rng.choice(_ESTATE_STEMS) + rng.choice(_ESTATE_WORDS) for _ in range(6)))
            vills = []
            for v in villages_by_town.get(t["code"], []):
                vrng = _stable_rng("village", v["code"])
                # Villages/communities within ~1.5 km of the township seat.
                vlng, vlat = offset(tlng, tlat, vrng.uniform(-1500, 1500), vrng.uniform(-1500, 1500))
                vills.append(Village(v["code"], v["name"], round(vlng, 6), round(vlat, 6)))
            if not vills:
                continue  # a township without villages cannot produce a full four-platforms record
            towns.append(Township(t["code"], t["name"], code, round(tlng, 6), round(tlat, 6),
                                  roads, landmarks, estates, tuple(vills)))
        row = counties[code]
        out.append(County(code, row["name"], cities.get(row["cityCode"], ""), clng, clat, tuple(towns)))
    return tuple(out)


#: Expected heartbeat interval per device type (s).  Real NB-IoT devices beat
#: every 0.5–24 h; these are compressed so that a minutes-long simulation
#: still exercises liveness and offline detection.
HEARTBEAT_SECONDS: dict[str, int] = {"smoke": 300, "electric": 120, "gas": 180, "water_level": 120, "manhole": 300}

#: Share of each device type in the fleet (smoke detectors dominate city deployments).
DEVICE_MIX: dict[str, float] = {"smoke": 0.45, "electric": 0.2, "gas": 0.15, "water_level": 0.08, "manhole": 0.12}


_OWNERS = {
    "smoke": ("{estate}物业服务中心", "{town}消防站", "{landmark}"),
    "electric": ("{landmark}", "{estate}物业服务中心", "国网{county}供电公司"),
    "gas": ("{county}天然气有限公司", "{landmark}", "{estate}物业服务中心"),
    "water_level": ("{county}水利局", "{town}人民政府"),
    "manhole": ("{county}市政管理处", "{county}排水有限公司", "中国电信{county}分公司"),
}


@dataclass(frozen=True)
class Place:
    """One real-world spot and the pieces people use to describe it."""

    county: County
    town: Township
    village: Village
    road: str
    number: int
    estate: str
    building: int
    landmark: str
    lng: float   # true WGS-84
    lat: float

    @property
    def full_address(self) -> str:
        """What a grid worker types: city, county, township, road and number."""
        return f"{self.county.city_name}{self.county.name}{self.town.name}{self.road}{self.number}号"

    def near(self, rng: random.Random, min_m: float, max_m: float) -> tuple[float, float]:
        """A WGS-84 point ``min_m``..``max_m`` metres away in a random direction."""
        import math
        dist, angle = rng.uniform(min_m, max_m), rng.uniform(0, 2 * math.pi)
        return offset(self.lng, self.lat, dist * math.cos(angle), dist * math.sin(angle))


def make_place(rng: random.Random, counties: tuple[County, ...], county: County | None = None,
               town: Township | None = None, village: Village | None = None) -> Place:
    county = county or rng.choice(counties)
    town = town or rng.choice(county.townships)
    village = village or rng.choice(town.villages)
    # Within ~400 m of the village / community centre.
    lng, lat = offset(village.lng, village.lat, rng.uniform(-400, 400), rng.uniform(-400, 400))
    return Place(county, town, village, rng.choice(town.roads), rng.randint(1, 400), rng.choice(town.estates),
                 rng.randint(1, 30), rng.choice(town.landmarks), round(lng, 6), round(lat, 6))


@dataclass(frozen=True)
class Device:
    device_id: str
    device_type: str
    place: Place
    address: str
    lng: float
    lat: float
    owner: str
    owner_phone: str
    heartbeat_seconds: int
    #: devices sharing a site (one building): a fire sets off several of them.
    site: str

    @property
    def street_code(self) -> str:
        return self.place.town.code

    def registry_row(self) -> dict[str, object]:
        """The CONTRACTS 1.3 device-registry record."""
        return {"deviceId": self.device_id, "deviceType": self.device_type, "streetCode": self.place.town.code,
                "villageCode": self.place.village.code, "address": self.address, "lng": self.lng, "lat": self.lat,
                "owner": self.owner, "ownerPhone": self.owner_phone, "heartbeatSeconds": self.heartbeat_seconds}


REGISTRY_COLUMNS = ("deviceId", "deviceType", "streetCode", "villageCode", "address", "lng", "lat", "owner",
                    "ownerPhone", "heartbeatSeconds")


def random_phone(rng: random.Random) -> str:
    """A mobile number with a real China Mobile/Unicom/Telecom prefix (synthetic)."""
    return rng.choice(("135", "136", "137", "138", "139", "150", "151", "158", "159", "130", "131", "132",
                       "155", "156", "186", "133", "153", "180", "181", "189", "177", "199")) + \
        f"{rng.randrange(10 ** 8):08d}"


def build_devices(rng: random.Random, counties: tuple[County, ...], count: int,
                  heartbeat_scale: float = 1.0) -> list[Device]:
    """A fleet of ``count`` devices; smoke detectors come in sites of 1–4 (one building's floors).

    ``heartbeat_scale`` stretches the compressed heartbeat intervals back towards real ones
    (compressed-time runs, where a simulated day passes in seconds)."""
    devices: list[Device] = []
    types = list(DEVICE_MIX)
    weights = [DEVICE_MIX[t] for t in types]
    site_no = 0
    while len(devices) < count:
        place = make_place(rng, counties)
        dtype = rng.choices(types, weights)[0]
        site_no += 1
        c, t = place.county, place.town
        if dtype in ("smoke", "electric", "gas"):
            base_addr = f"{place.full_address}{place.estate}{place.building}幢"
        elif dtype == "water_level":
            base_addr = f"{c.city_name}{c.name}{t.name}{place.road}{rng.choice(('下穿通道', '桥洞', '低洼路段'))}"
        else:
            base_addr = f"{c.city_name}{c.name}{t.name}{place.road}与{rng.choice(t.roads)}交叉口"
        owner = rng.choice(_OWNERS[dtype]).format(estate=place.estate, town=t.name, county=c.name,
                                                  landmark=place.landmark)
        per_site = rng.choice((1, 1, 2, 3, 4)) if dtype == "smoke" else 1
        for unit in range(per_site):
            if len(devices) >= count:
                break
            # 15-digit IMEI-like id: 86 (China's reporting-body prefix) + 13 digits.
            device_id = f"86{rng.randrange(10 ** 13):013d}"
            address = base_addr + (f"{unit + 1}单元" if per_site > 1 else "")
            # Units of one site are within a few metres of each other.
            dlng, dlat = offset(place.lng, place.lat, rng.uniform(-5, 5), rng.uniform(-5, 5))
            devices.append(Device(device_id, dtype, place, address, round(dlng, 6), round(dlat, 6), owner,
                                  random_phone(rng), int(HEARTBEAT_SECONDS[dtype] * heartbeat_scale),
                                  f"site-{site_no}"))
    return devices
