"""Zhejiang administrative divisions (统计用区划代码), shipped with the package.

The CSV files in ``data/`` are a copy of the reference table named in
CONTRACTS.md 1.4; the product reads only this copy, never the shared folder,
so a deployed hub does not depend on the repository's neighbours.  A code
that is not in these tables is invalid input.

Codes are 12 digits: province 2 + city 2 + county 2 + township 3 + village 3.
The tables are loaded once per process (about 27,000 rows, ~30 ms).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"

PROVINCE_CODE = "33"  # 浙江省 in GB/T 2260
COUNTY_DIGITS = 6
STREET_DIGITS = 9
VILLAGE_DIGITS = 12


@dataclass(frozen=True)
class Division:
    code: str
    name: str
    parent: str  # the enclosing division's code ("" for a city)


@dataclass(frozen=True)
class Divisions:
    """Lookup tables: code -> :class:`Division` per level."""

    cities: dict[str, Division]
    counties: dict[str, Division]
    streets: dict[str, Division]
    villages: dict[str, Division]

    def county_of_street(self, street_code: str) -> str | None:
        street = self.streets.get(street_code)
        return street.parent if street else None

    def street_of_village(self, village_code: str) -> str | None:
        village = self.villages.get(village_code)
        return village.parent if village else None

    def name(self, code: str) -> str | None:
        for table in (self.villages, self.streets, self.counties, self.cities):
            if code in table:
                return table[code].name
        return None


def _read(name: str, parent_column: str | None) -> dict[str, Division]:
    with open(DATA_DIR / name, encoding="utf-8", newline="") as fh:
        return {row["code"]: Division(row["code"], row["name"], row[parent_column] if parent_column else "")
                for row in csv.DictReader(fh)}


@lru_cache(maxsize=1)
def divisions() -> Divisions:
    """The process-wide tables (read once, then shared: they never change at run time)."""
    return Divisions(
        cities=_read("cities.csv", None),
        counties=_read("counties.csv", "cityCode"),
        streets=_read("townships.csv", "areaCode"),
        villages=_read("villages.csv", "streetCode"),
    )
