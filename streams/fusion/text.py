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
_NOT_STEM = set("的在了有是与及旁边附近对面门口里内外侧号弄幢栋楼单元")


def places(text: str | None) -> set[str]:
    """Named places in a text: a two-character stem plus a place word (``翠苑小区``, ``岩泉加油站``).

    Most Chinese estate and landmark names are a two-character stem and a kind word; roads and
    house numbers are cut out first so that ``春晖街岩泉加油站`` yields ``岩泉加油站``.
    """
    t = strip_divisions(fold(text))
    t = _ROAD.sub(" ", t)
    for word in ("附近", "旁边", "对面", "门口", "东侧", "西侧", "南侧", "北侧"):
        t = t.replace(word, " ")
    found: set[str] = set()
    taken: set[int] = set()
    for kind in _PLACE_KINDS:
        pos = t.find(kind)
        while pos >= 0:
            end = pos + len(kind)
            name_end = end
            if t[max(0, pos - 2):pos] in _PLACE_KINDS:
                # "和园名邸小区": the estate is 和园名邸; 小区 only says what it is
                pos, name_end = pos - 2, pos
            stem = t[max(0, pos - 2):pos]
            if (len(stem) == 2 and all(_CJK.match(c) and c not in _NOT_STEM for c in stem)
                    and not taken.intersection(range(pos - 2, end))):
                found.add(t[pos - 2:name_end])
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
