"""The agency catalog: who can receive a dispatch, and how it is delivered.

Agencies are ``<countyCode>.<code>`` (CONTRACTS.md section 2).  The county
list is not copied into ``deploy/agencies.yaml``: it is generated at load
time from ``gridhub/core/reference/data/counties.csv`` (all 90 Zhejiang counties),
so a boundary change is a reference-data update, not a config edit.  The
township platforms ``<county>.town-<streetCode>`` come from
``townships.csv`` the same way.

The city level used by 督办 above a county centre is ``<cityCode>00.zzzx``
(e.g. ``330500.zzzx`` for 湖州市): the city's own 6-digit division code, so
every agency id and dispatch topic keeps the one ``<6 digits>.<code>`` shape.

Shared by routing (``streams.routing``) and webhook delivery
(``connectors.webhook``), so it lives here, free of either's side effects.

Delivery is Kafka (the agency consumes ``dispatch.<agency>``) unless the
catalog, or the ``GRIDHUB_WEBHOOKS`` environment variable (a JSON object
``{agency: {url, secret_env | secret_file, ...}}``, used by tests and
one-off deployments), names a webhook for it.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from gridhub.core.yamlconf import ConfigError, LineDict, line_of, load_yaml, parse_duration_ms

REFERENCE_DIR = Path(__file__).resolve().parent / "reference" / "data"
WEBHOOKS_ENV = "GRIDHUB_WEBHOOKS"

#: CONTRACTS.md section 2: the short codes every county has.  The catalog
#: file may name these (with display names) but not invent others.
CONTRACT_CODES = ("zzzx", "zhzf", "scjg", "sthj", "yjgl", "xfjy", "gaj", "slj", "zjj", "jtys", "wsjk", "zrzy",
                  "nync", "whsc")
TOWN_PREFIX = "town-"
CENTRE = "zzzx"


@dataclass(frozen=True)
class WebhookTarget:
    """Where and how one webhook agency receives its dispatches."""

    agency: str
    url: str
    secret_env: str | None = None
    secret_file: str | None = None
    # Defaults: 6 attempts with 1 s doubling to at most 60 s waits about
    # 1+2+4+8+16 = 31 s before the dead letter, long enough to ride out a
    # receiver restart, short enough not to hold a partition for minutes.
    max_attempts: int = 6
    initial_backoff_ms: int = 1000
    max_backoff_ms: int = 60_000
    # 10 s: agency endpoints answer in well under a second; a slow one is down.
    timeout_ms: int = 10_000
    # Issue 14: retriable failures (5xx, 408/425/429, timeouts, refused connections) are retried for
    # at least this long, whatever max_attempts says, so a receiver away for a restart or a short
    # outage (the test: 60 s) gets its dispatches instead of the dead-letter topic.  3 minutes: well
    # over a restart, and under aiokafka's max_poll_interval (5 min), past which the webhook
    # sink's consumer, paused while it delivers, would be expelled from its group.
    retry_for_ms: int = 180_000

    def secret(self) -> bytes:
        """The HMAC key: from the named env variable or file (never from the YAML itself)."""
        if self.secret_env:
            value = os.environ.get(self.secret_env)
            if value:
                return value.encode("utf-8")
        if self.secret_file:
            try:
                return Path(self.secret_file).read_text(encoding="utf-8").strip().encode("utf-8")
            except OSError:
                pass
        raise LookupError(f"no webhook secret for {self.agency} (set {self.secret_env or self.secret_file})")

    def __repr__(self) -> str:  # never show where secrets live beyond the variable name
        return f"WebhookTarget(agency={self.agency!r}, url={self.url!r}, max_attempts={self.max_attempts})"


@dataclass(frozen=True)
class County:
    code: str
    name: str
    city_code: str


@dataclass
class AgencyCatalog:
    """Every agency id the hub may dispatch to, and its delivery mode."""

    path: Path
    codes: dict[str, str]
    counties: dict[str, County]
    townships: dict[str, str]  # streetCode -> countyCode
    webhooks: dict[str, WebhookTarget] = field(default_factory=dict)

    # --- ids -------------------------------------------------------------------
    def county_agency(self, county_code: str, code: str) -> str:
        return f"{county_code}.{code}"

    def town(self, street_code: str) -> str:
        return f"{street_code[:6]}.{TOWN_PREFIX}{street_code}"

    def centre(self, county_code: str) -> str:
        return f"{county_code}.{CENTRE}"

    def city_centre(self, county_code: str) -> str:
        county = self.counties.get(county_code)
        city = county.city_code if county else county_code[:4]
        return f"{city}00.{CENTRE}"

    def is_city_centre(self, agency: str) -> bool:
        code, _, short = agency.partition(".")
        return short == CENTRE and code.endswith("00") and code[:4] in {c.city_code for c in self.counties.values()}

    def exists(self, agency: str) -> bool:
        county, _, short = agency.partition(".")
        if short.startswith(TOWN_PREFIX):
            street = short[len(TOWN_PREFIX):]
            return self.townships.get(street) == county
        if county in self.counties:
            return short in self.codes
        return self.is_city_centre(agency)

    def all_agencies(self) -> list[str]:
        """Every county and city agency id (not the 1,300 township platforms)."""
        out = [f"{c}.{code}" for c in sorted(self.counties) for code in self.codes]
        out += sorted({f"{c.city_code}00.{CENTRE}" for c in self.counties.values()})
        return out

    def dispatch_agencies(self, counties: Iterable[str] | None = None) -> list[str]:
        """Every agency that can get a dispatch for a case in ``counties`` (default: every county):
        the county agencies, the county's township platforms and its city's centre."""
        wanted = sorted(self.counties) if counties is None else list(dict.fromkeys(counties))
        unknown = [c for c in wanted if c not in self.counties]
        if unknown:
            raise ValueError(f"unknown county code(s) {', '.join(unknown)} (not in {self.path.name})")
        out: list[str] = []
        for county in wanted:
            out += [self.county_agency(county, code) for code in self.codes]
            out += sorted(self.town(street) for street, c in self.townships.items() if c == county)
        out += sorted({self.city_centre(county) for county in wanted})
        return out

    # --- delivery ----------------------------------------------------------------
    def delivery(self, agency: str) -> str:
        return "webhook" if agency in self.webhooks else "kafka"

    def webhook(self, agency: str) -> WebhookTarget | None:
        return self.webhooks.get(agency)


def _read_csv(name: str) -> list[dict[str, str]]:
    with (REFERENCE_DIR / name).open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _webhook(path: Path, agency: str, spec: Any, defaults: Mapping[str, Any]) -> WebhookTarget:
    line = line_of(spec)
    if not isinstance(spec, dict):
        raise ConfigError(path, line, f"delivery of {agency}: expected a mapping")
    merged = {**defaults, **spec}
    mode = merged.get("mode", "webhook")
    if mode != "webhook":
        raise ConfigError(path, line, f"delivery of {agency}: mode must be 'webhook' or 'kafka', not {mode!r}")
    url = merged.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigError(path, line, f"webhook of {agency}: 'url' must be an http(s) URL")
    if "secret" in spec:
        raise ConfigError(path, line, f"webhook of {agency}: put the secret in an env variable (secret_env) "
                                      "or a file (secret_file), never in the catalog")
    if not merged.get("secret_env") and not merged.get("secret_file"):
        raise ConfigError(path, line, f"webhook of {agency}: needs secret_env or secret_file")
    try:
        attempts = int(merged.get("max_attempts", WebhookTarget.max_attempts))
        if attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        return WebhookTarget(
            agency=agency, url=url, secret_env=merged.get("secret_env"), secret_file=merged.get("secret_file"),
            max_attempts=attempts,
            initial_backoff_ms=parse_duration_ms(merged.get("initial_backoff", "1s")),
            max_backoff_ms=parse_duration_ms(merged.get("max_backoff", "60s")),
            timeout_ms=parse_duration_ms(merged.get("timeout", "10s")),
            retry_for_ms=parse_duration_ms(merged.get("retry_for", "3m")),
        )
    except ValueError as exc:
        raise ConfigError(path, line, f"webhook of {agency}: {exc}") from exc


def load_catalog(path: Path, env: Mapping[str, str] | None = None) -> AgencyCatalog:
    """Load and validate ``deploy/agencies.yaml``; raises :class:`ConfigError` naming file and line."""
    env = os.environ if env is None else env
    doc = load_yaml(path)
    if not isinstance(doc, dict):
        raise ConfigError(path, None, "the agency catalog must be a YAML mapping")
    raw_codes = doc.get("county_agencies")
    if not isinstance(raw_codes, dict) or not raw_codes:
        raise ConfigError(path, line_of(doc, "county_agencies"), "'county_agencies' must map short codes to names")
    codes: dict[str, str] = {}
    for code, name in raw_codes.items():
        if code not in CONTRACT_CODES:
            raise ConfigError(path, line_of(raw_codes, code),
                              f"unknown agency code {code!r} (CONTRACTS.md section 2 lists {', '.join(CONTRACT_CODES)})")
        codes[str(code)] = str(name)
    if CENTRE not in codes:
        raise ConfigError(path, line_of(doc, "county_agencies"), "'zzzx' (the county centre) is required: triage and 督办 go there")
    counties = {r["code"]: County(r["code"], r["name"], r["cityCode"]) for r in _read_csv("counties.csv")}
    townships = {r["code"]: r["areaCode"] for r in _read_csv("townships.csv")}
    catalog = AgencyCatalog(path=path, codes=codes, counties=counties, townships=townships)

    delivery = doc.get("delivery") or LineDict()
    if not isinstance(delivery, dict):
        raise ConfigError(path, line_of(doc, "delivery"), "'delivery' must be a mapping")
    default = delivery.get("default", "kafka")
    if default != "kafka":
        raise ConfigError(path, line_of(delivery, "default"), "delivery.default must be 'kafka' (webhooks are per agency)")
    defaults = delivery.get("webhook") or {}
    if not isinstance(defaults, dict):
        raise ConfigError(path, line_of(delivery, "webhook"), "delivery.webhook must be a mapping of defaults")
    agencies = delivery.get("agencies") or {}
    if not isinstance(agencies, dict):
        raise ConfigError(path, line_of(delivery, "agencies"), "delivery.agencies must be a mapping")
    specs: dict[str, tuple[Any, int | None]] = {a: (s, line_of(agencies, a)) for a, s in agencies.items()}
    override = env.get(WEBHOOKS_ENV)
    if override:
        try:
            extra = json.loads(override)
            assert isinstance(extra, dict)
        except (ValueError, AssertionError) as exc:
            raise ConfigError(WEBHOOKS_ENV, None, "must be a JSON object {agency: {url, secret_env, ...}}") from exc
        specs.update({a: (s, None) for a, s in extra.items()})
    for agency, (spec, line) in specs.items():
        agency = str(agency)
        if not catalog.exists(agency):
            raise ConfigError(path, line, f"delivery for unknown agency {agency!r}")
        if isinstance(spec, dict) and spec.get("mode", "webhook") == "kafka":
            continue
        catalog.webhooks[agency] = _webhook(path, agency, spec, defaults)
    return catalog


def catalog_for_rules(rules_path: Path, env: Mapping[str, str] | None = None) -> AgencyCatalog:
    """The catalog a routing rules file names (its ``agencies:`` key, relative to the file)."""
    doc = load_yaml(Path(rules_path))
    name = doc.get("agencies", "agencies.yaml") if isinstance(doc, dict) else "agencies.yaml"
    if not isinstance(name, str):
        raise ConfigError(rules_path, line_of(doc, "agencies"), "agencies: expected a file name")
    path = Path(name)
    return load_catalog(path if path.is_absolute() else Path(rules_path).parent / path, env)
