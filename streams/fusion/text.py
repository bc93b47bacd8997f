"""Text and address normalisation for fusion.

Two human reports of one incident are written by different people: they
share content words ("烧烤", "油烟") and the place, rarely the wording.  We
compare *character bigrams* of the normalised text, with the address
removed, by exact Jaccard similarity.  Bigrams need no dictionary, are what
Chinese near-duplicate detection commonly uses, and the candidate set is
already cut down to a handful of cases by county, time, space and category,
so exact Jaccard over a few hundred bigrams is cheaper and more accurate
than MinHash sketches (which pay off only when searching a whole corpus;
measured with ``gridhub bench fusion``).

Addresses are normalised into a *road key* (``环城西路``) and an *address
key* (``环城西路128号``): NFKC folds full-width digits and letters
(``１２８号`` -> ``128号``), and the province / city / county / township
prefixes are stripped using the reference division names, because one caller
says "浙江省湖州市吴兴区环城西路128号" and another "环城西路128号".
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from gridhub.core.reference import DATA_DIR

_REF = DATA_DIR

# Filler of 12345 transcripts and platform reports that says nothing about the incident.
_FILLER = ("市民来电反映", "市民来电", "来电反映", "来电人反映", "群众反映", "网格员上报", "网格员巡查发现",
           "巡查发现", "反映", "希望", "请求", "要求", "尽快", "处理", "相关部门", "有关部门", "您好", "你好",
           "请", "麻烦", "谢谢", "附近", "门口", "旁边", "对面", "一直", "有人", "现在", "目前", "严重", "影响")
_PUNCT = re.compile(r"[\s\W_]+", re.UNICODE)
# road / lane / place followed by a house number ("号", or "弄" + "号")
_ROAD = re.compile(r"([\u4e00-\u9fff]{1,10}?(?:大道|路|街(?!道)|巷))(?:(\d+)弄)?(\d+)?号?")



@lru_cache(maxsize=1)
def _prefixes() -> tuple[str, ...]:
    """Division names (longest first) that callers put in front of the street address."""
    names: set[str] = {"浙江省", "浙江"}
    for fname in ("cities.csv", "counties.csv", "townships.csv"):
        with open(_REF / fname, encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                name = row["name"].strip()
                names.add(name)
                # "湖州市" is also said "湖州"; only strip short forms of two+ characters.
                for suffix in ("市", "区", "县"):
                    if name.endswith(suffix) and len(name) >= 3 and fname != "townships.csv":
                        names.add(name[: -len(suffix)])
    return tuple(sorted(names, key=len, reverse=True))


def fold(text: str | None) -> str:
    """NFKC (full-width -> half-width), lower case, no spaces."""
    if not text:
        return ""
    return _fold(text)


@lru_cache(maxsize=16384)  # one report's text is folded by several extractors; 16 Ki short strings ~ a few MB
def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower().replace(" ", "").replace("\u3000", "")


@lru_cache(maxsize=1)
def _prefix_pattern() -> re.Pattern[str]:
    # Alternatives in _prefixes() order (longest first): the regex engine tries them in that
    # order, so one match() does what a startswith() loop over ~1,500 names did.
    return re.compile("|".join(map(re.escape, _prefixes())))


@lru_cache(maxsize=65536)  # addresses repeat (every report of a place); 64 Ki entries ~ a few MB
def strip_divisions(address: str) -> str:
    """Remove leading province / city / county / township names, repeatedly."""
    pattern = _prefix_pattern()
    while address:
        match = pattern.match(address)
        if match is None:
            break
        if match.end() < len(address):
            address = address[match.end():]
            continue
        # The whole rest is a division name: strip a shorter one, never everything.
        shorter = next((n for n in _prefixes() if address.startswith(n) and len(address) > len(n)), None)
        if shorter is None:
            break
        address = address[len(shorter):]
    return address


# Words that end a named place (estates, public buildings, landmarks) in Chinese addresses.
_PLACE_KINDS = tuple(sorted((
    "小区", "花园", "新村", "公寓", "家园", "嘉园", "名邸", "华庭", "锦苑", "苑", "府", "大厦", "大楼", "广场",
    "农贸市场", "菜场", "市场", "小学", "中学", "幼儿园", "人民医院", "医院", "卫生服务中心", "公交站", "公园",
    "超市", "加油站", "汽车站", "火车站", "体育馆", "图书馆", "派出所", "银行", "商业街", "酒店", "宾馆",
    "停车场", "工业园", "村委会", "居委会", "社区",
    # Hangzhou-style numbered estates: 翠苑一区, 朝晖三区
    "一区", "二区", "三区", "四区", "五区", "六区", "七区", "八区", "九区"), key=len, reverse=True))
_CJK = re.compile(r"[\u4e00-\u9fff]")
_NOT_STEM = set("的在了有是与及旁边附近对面里内外侧号弄幢栋楼单元那这某个过求议到或去说把被给从往向让们我你他她该查卖")


# Kinds that name one sort of place: an estate is called 小区, 花园 or 社区 by different people.
_KIND_CLASS = {k: "小区" for k in ("小区", "花园", "新村", "公寓", "家园", "嘉园", "名邸", "华庭", "锦苑", "苑", "府",
                                  "社区", "居委会", "一区", "二区", "三区", "四区", "五区", "六区", "七区", "八区", "九区")}
_KIND_CLASS.update({k: "菜场" for k in ("农贸市场", "菜场", "市场")})


def places(text: str | None, county: str | None = None) -> set[str]:
    """Named places in a text: a two-character stem plus a place word (``翠苑小区``, ``岩泉加油站``).

    Most Chinese estate and landmark names are a two-character stem and a kind word; roads,
    house numbers, division and village names are cut out first so that ``春晖街岩泉加油站``
    yields ``岩泉加油站``.  Kinds that people use for one place interchangeably (小区 / 花园 /
    社区; 菜场 / 农贸市场) are one class, so ``天宁寺小区`` and ``天宁寺社区`` are one place.
    A stem with a function character (``那个菜场``, ``映过菜场``) is no name.
    """
    t = strip_local(text or "", county) if county else strip_divisions(fold(text))
    t = _ROAD.sub(" ", t)
    for word in ("附近", "旁边", "对面", "门口", "东侧", "西侧", "南侧", "北侧"):
        t = t.replace(word, " ")
    found: set[str] = set()
    taken: set[int] = set()
    for kind in _PLACE_KINDS:
        pos = t.find(kind)
        while pos >= 0:
            end = pos + len(kind)
            cls = _KIND_CLASS.get(kind, kind)
            if t[max(0, pos - 2):pos] in _PLACE_KINDS:
                # "和园名邸小区": the estate is 和园名邸; 小区 only says what it is
                pos = pos - 2
                cls = _KIND_CLASS.get(t[pos:pos + 2], t[pos:pos + 2])
            stem = t[max(0, pos - 2):pos]
            if (len(stem) == 2 and all(_CJK.match(c) and c not in _NOT_STEM for c in stem)
                    and not taken.intersection(range(pos - 2, end))):
                found.add(stem + cls)
                taken.update(range(pos - 2, end))
            pos = t.find(kind, end)
    return found


@dataclass(frozen=True)
class AddressKey:
    """``road``: the street or named place; ``full``: road + house number (None if no number)."""

    road: str | None
    full: str | None


def address_key(address: str | None) -> AddressKey:
    addr = strip_divisions(fold(address))
    if not addr:
        return AddressKey(None, None)
    m = _ROAD.search(addr)
    if m:
        road, lane, number = m.group(1), m.group(2), m.group(3)
        road = strip_divisions(road)
        if lane and number:
            return AddressKey(road, f"{road}{lane}弄{number}号")
        if number or lane:
            return AddressKey(road, f"{road}{number or lane}号")
        return AddressKey(road, None)
    return AddressKey(None, None)


def content(text: str | None, address: str | None = None) -> str:
    """The words of a report that describe the incident: folded, filler, address and punctuation removed."""
    out = fold(text)
    addr = fold(address)
    if addr:
        out = out.replace(addr, " ")
        stripped = strip_divisions(addr)
        if stripped:
            out = out.replace(stripped, " ")
    for word in _FILLER:
        out = out.replace(word, " ")
    return _PUNCT.sub(" ", out).strip()


def shingles(text: str) -> set[str]:
    """Character bigrams within each run of the content (no bigram spans a removed word)."""
    grams: set[str] = set()
    for run in text.split():
        if len(run) == 1:
            grams.add(run)
        grams.update(run[i:i + 2] for i in range(len(run) - 1))
    return grams


def jaccard(a: set[str] | frozenset[str], b: set[str] | frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


# --- places from the reference divisions: townships and villages (issue 13) ------------------

@dataclass(frozen=True)
class Gazetteer:
    """Township and village names of the reference divisions, by county.

    ``towns[county]`` maps a township's full name (``新塍镇``) and its short form (``新塍``, the
    name without 街道 / 镇 / 乡, when at least two characters are left) to its code;
    ``villages[county]`` maps a village / community full name (``普光村``, ``南溪社区``) to
    (village code, township code).  Short village names are not used: ``南溪`` is also a road.
    """

    towns: dict[str, dict[str, str]]
    villages: dict[str, dict[str, tuple[str, str]]]


_TOWN_SUFFIXES = ("街道", "镇", "乡")
_VILLAGE_SUFFIX = re.compile(r"(村|社区|居委会|村委会)$")


@lru_cache(maxsize=1)
def gazetteer() -> Gazetteer:
    towns: dict[str, dict[str, str]] = {}
    villages: dict[str, dict[str, tuple[str, str]]] = {}
    with open(_REF / "townships.csv", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            name, code, county = row["name"].strip(), row["code"], row["areaCode"]
            names = towns.setdefault(county, {})
            names[name] = code
            for suffix in _TOWN_SUFFIXES:
                if name.endswith(suffix) and len(name) - len(suffix) >= 2:
                    names.setdefault(name[: -len(suffix)], code)
    with open(_REF / "villages.csv", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            name = row["name"].strip()
            # "洋桥村委会" is said "洋桥村", "格林社区居委会" "格林社区", "白洋居委会" "白洋社区"
            for short in (name, re.sub(r"村委会$", "村", name), re.sub(r"(社区)?居委会$", "社区", name)):
                if len(short) >= 3 and _VILLAGE_SUFFIX.search(short):
                    villages.setdefault(row["areaCode"], {}).setdefault(short, (row["code"], row["streetCode"]))
    return Gazetteer(towns, villages)


@lru_cache(maxsize=64)
def _town_pattern(county: str) -> re.Pattern[str] | None:
    names = sorted(gazetteer().towns.get(county, {}), key=len, reverse=True)
    return re.compile("|".join(map(re.escape, names))) if names else None


@lru_cache(maxsize=64)
def _village_pattern(county: str) -> re.Pattern[str] | None:
    names = sorted(gazetteer().villages.get(county, {}), key=len, reverse=True)
    return re.compile("|".join(map(re.escape, names))) if names else None


def towns_in(text: str | None, county: str) -> set[str]:
    """Township codes of ``county`` named in a text (full or short name, or through a village)."""
    t = fold(text)
    out: set[str] = set()
    pattern = _town_pattern(county)
    if t and pattern is not None:
        names = gazetteer().towns[county]
        out.update(names[m.group(0)] for m in pattern.finditer(t))
    out.update(street for _, street in villages_in(t, county).values())
    return out


def villages_in(text: str | None, county: str) -> dict[str, tuple[str, str]]:
    """Village / community names of ``county`` in a text -> (village code, township code)."""
    return dict(_villages_in(fold(text), county))


@lru_cache(maxsize=16384)  # pure; a report's address and text are searched more than once
def _villages_in(t: str, county: str) -> tuple[tuple[str, tuple[str, str]], ...]:
    pattern = _village_pattern(county)
    if not t or pattern is None:
        return ()
    names = gazetteer().villages[county]
    return tuple((m.group(0), names[m.group(0)]) for m in pattern.finditer(t))


@lru_cache(maxsize=16384)  # pure; called by the road, place and village extractors of one report
def strip_local(address: str, county: str | None) -> str:
    """Remove division names (province .. township) and the county's village / community names
    and township short names wherever they stand, so that ``南溪社区南溪东路`` and ``塘汇茶园路``
    give the roads ``南溪东路`` and ``茶园路``."""
    out = strip_divisions(fold(address))
    if county:
        town = _town_pattern(county)
        # a township's short name only as a prefix of a road ("塘汇茶园路"): elsewhere it may be part
        # of a name ("翠苑一区" in 翠苑街道)
        match = town.match(out) if town is not None else None
        if match is not None and _ROAD_ANY.match(out[match.end():]):
            out = out[match.end():]
        village = _village_pattern(county)
        if village is not None:
            out = village.sub(" ", out)
    return out


# A road name: a two-character stem, an optional direction and a road word (南江路, 中环东路,
# 亭桥南路), or a numbered national / provincial road (320国道, 01省道).  Longer stems are cut
# to their last two characters on every side alike (长纤塘路 -> 纤塘路), so keys still match.
_ROAD_ANY = re.compile(r"(\d{2,3}(?:国道|省道))|([\u4e00-\u9fff]{2})([东西南北中]?)(大道|公路|路|街(?!道)|巷)")
# characters that are no part of a road's name: function words, directions said before it
_ROAD_STOP = set("在的了有是与及和跟到从往向靠近边那这个说条上里过去来就都也还又把被给对址要摆段口门号马字袋侧")


def roads_in(text: str | None, county: str | None) -> set[str]:
    """Road names in an address or text (``320国道``, ``南溪东路``): a clause may name two roads
    (``双溪路与中环东路交叉口``); words around them are not part of the key."""
    t = strip_local(text or "", county)
    found: set[str] = set()
    for m in _ROAD_ANY.finditer(t):
        if m.group(1):
            found.add(m.group(1))
            continue
        stem = m.group(2)
        if any(c in _ROAD_STOP for c in stem) or t[m.end():m.end() + 1] in ("边", "旁"):
            continue  # "东侧路边": the roadside, not a road named 东侧路
        found.add(stem + m.group(3) + m.group(4))
    return found


# --- concepts: what the problem is, in any of its words ---------------------------------------

def concepts_in(text: str | None, vocabulary: dict[str, tuple[str, ...]]) -> frozenset[str]:
    """The concepts of ``vocabulary`` (concept -> words) whose words occur in the text."""
    t = fold(text)
    if not t:
        return frozenset()
    return frozenset(name for name, words in vocabulary.items() if _words_pattern(words).search(t))


@lru_cache(maxsize=256)  # one compiled alternation per concept of the config
def _words_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(map(re.escape, sorted((fold(w) for w in words), key=len, reverse=True))))


# A shop named by what it sells: 2-3 characters before 店 / 馆 (小炒店, 烤鱼店, 面馆, 快餐店).
_SHOP = re.compile(r"([\u4e00-\u9fff]{2,3}?)(店|馆)(?![员主家里内外])")
_SHOP_NOT = set("的在了有是那这某个家一该上说我们他她它商酒饭宾旅路街门边周沿")


def shops_in(text: str | None) -> set[str]:
    """Kinds of shop a text names (``烧烤店``, ``面馆``): two reports about one shop name it alike;
    two shops of different kinds on one street are two places."""
    out: set[str] = set()
    for m in _SHOP.finditer(fold(text)):
        stem = m.group(1)
        while stem and stem[0] in _SHOP_NOT:
            stem = stem[1:]
        if (len(stem) >= 2 or (stem and m.group(2) == "馆")) and not any(c in _SHOP_NOT for c in stem):
            out.add(stem[-2:] + m.group(2))
    return out
