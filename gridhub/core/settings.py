"""One typed settings object for every gridhub process.

Values come, in increasing priority, from the defaults below, an optional
YAML config file (``GRIDHUB_CONFIG``), and ``GRIDHUB_*`` environment
variables.  The defaults point at the local infrastructure that
``gridhub infra up`` starts, on ports chosen to avoid the standard ones so a
system Kafka / ClickHouse / Mosquitto cannot collide with it.

A *namespace* isolates one environment from another inside the same
infrastructure: it prefixes every topic, the Faust application id (and so
every consumer group and changelog) and the ClickHouse database.  The empty
namespace gives the contract names of CONTRACTS.md (``raw.sensors``,
``gridhub``); tests and ``gridhub replay --namespace`` use their own.
"""

from __future__ import annotations

import difflib
import os
import types
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]  # gridhub/core/settings.py -> repo root


class SettingsError(ValueError):
    """A setting an operator got wrong, as one line naming the variable (or config key), value and what is allowed.

    ``gridhub`` prints it as ``error: ...`` and exits with status 2 (a usage error), instead of
    pydantic's multi-line traceback naming a field the operator never typed.
    """
#: The development PII key: public (it is in this file), so production refuses it.
DEV_PII_KEY = "gridhub-dev-pii-key"
#: The secret settings: SecretStr fields, revealed only where a client needs the value.
SECRET_FIELDS = ("kafka_sasl_password", "clickhouse_password", "ingest_tokens", "feedback_tokens", "pii_key")


def reveal(value: SecretStr | str | None) -> str:
    """The plain text of a secret setting (``model_copy(update=...)`` may have put a plain str there)."""
    if value is None:
        return ""
    return value.get_secret_value() if isinstance(value, SecretStr) else str(value)



class _YamlFileSource(PydanticBaseSettingsSource):
    """Reads the optional YAML file named by ``GRIDHUB_CONFIG``; an unknown key is an error (a typo is not ignored)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("GRIDHUB_CONFIG")
        if not path:
            return {}
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise SettingsError(f"GRIDHUB_CONFIG={path}: the config file must be a YAML mapping of settings")
        known = set(self.settings_cls.model_fields)
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(str(key), sorted(known), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else "; the keys are the settings' names (docs/infra.md)"
                raise SettingsError(f"GRIDHUB_CONFIG={path}: unknown key {key!r}{hint}")
        return data


class _SecretFileSource(PydanticBaseSettingsSource):
    """``GRIDHUB_<FIELD>_FILE=/path``: the field's value is the file's content (container secrets).

    Kubernetes / Docker mount secrets as files; a file keeps the secret out of
    the process environment (``/proc/<pid>/environ``, crash dumps, ``env`` in a
    debug shell).  A non-empty plain ``GRIDHUB_<FIELD>`` variable wins when both are set; an empty
    one (as ``Settings.as_env`` passes an unset secret to a child process) does not.
    One trailing newline (as ``echo`` and editors write) is not part of the value.
    """

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.settings_cls.model_fields:
            variable = f"GRIDHUB_{name.upper()}_FILE"
            path = os.environ.get(variable)
            if not path or os.environ.get(f"GRIDHUB_{name.upper()}"):
                continue
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:  # the path, never the content
                raise ValueError(f"{variable}: cannot read {path}: {exc.strerror}") from None
            out[name] = text[:-1] if text.endswith("\n") else text
        return out


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRIDHUB_", extra="ignore")

    # --- where things live -------------------------------------------------
    run_dir: Path = Field(default=REPO_ROOT / ".run", description="infra data, logs and pid files")
    namespace: str = Field(default="", description="prefix for topics, app id and ClickHouse database")

    # --- Kafka ---------------------------------------------------------------
    kafka_host: str = "127.0.0.1"
    # 19092: 9092 + 10000, so a system Kafka on 9092 never collides.
    kafka_port: int = 19092
    # 19093: controller listener of the KRaft combined node.
    kafka_controller_port: int = 19093
    kafka_heap: str = "-Xms512m -Xmx1g"
    # Client security (docs/security.md): PLAINTEXT for the local dev broker; SASL_PLAINTEXT or
    # SASL_SSL with SCRAM against a secured cluster (`gridhub infra up --secure`, deploy/k8s/).
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "SCRAM-SHA-256"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = Field(default=SecretStr(""), repr=False)
    kafka_ssl_cafile: str = ""
    # Kafka 4.0 line: faust-streaming is tested against 4.0 (DESIGN.md).
    kafka_version: str = "4.0.1"
    # One partition per county would be 90 (Zhejiang has 90 counties); 12
    # spreads them evenly over up to 12 workers on this 2-core class of host.
    partitions: int = 12
    replication_factor: int = 1

    # --- ClickHouse ----------------------------------------------------------
    clickhouse_host: str = "127.0.0.1"
    # 19000 / 18123: 9000 / 8123 + 10000.
    clickhouse_port: int = 19000
    clickhouse_http_port: int = 18123
    clickhouse_user: str = "default"
    clickhouse_password: SecretStr = Field(default=SecretStr(""), repr=False)
    clickhouse_database: str = "gridhub"
    # Empty: one server.  A remote_servers cluster name (`gridhub` in deploy/k8s/clickhouse.yaml): the
    # tables are Replicated + Distributed and migrations run on every replica (docs/scaling.md).
    clickhouse_cluster: str = ""

    # --- MQTT ----------------------------------------------------------------
    mqtt_host: str = "127.0.0.1"
    # 11883: 1883 + 10000.
    mqtt_port: int = 11883
    # The bridge's login (production Mosquitto has allow_anonymous false: deploy/k8s/mosquitto.yaml).
    # Empty username: connect anonymously (the local dev broker).
    mqtt_username: str = ""
    mqtt_password: str = Field(default="", repr=False)
    # TLS to the broker (port 8883 in deploy/k8s/mosquitto.yaml); the CA file verifies its certificate
    # (empty: the system's CAs).
    mqtt_tls: bool = False
    mqtt_ca_file: str = ""

    # --- hub services ----------------------------------------------------------
    app_id: str = "gridhub"
    store: str = Field(default="rocksdb://", description="Faust table store: rocksdb:// or memory://")
    web_port: int = Field(default=16066, description="Faust worker web/metrics port")
    # How long the worker's producer waits to fill a produce request.  Every hop of a report
    # (reports, linked, cases, events, dispatches, table changelogs) is a send, and on this class
    # of host each produce request costs ~0.4 ms of socket time whatever its size (e2e profile,
    # docs/benchmarks.md): a few ms more per hop buys fewer, fuller requests.
    producer_linger_ms: int = Field(default=5, ge=0, le=1000, description="Faust producer linger (ms)")
    # Issue 14: agents take up to this many events of one partition at a time, or what arrived within
    # batch_within_ms: state is written once per changed key per batch and outputs confirmed once per batch.
    # 500 events is ~0.1 s of work at the hub's per-event cost (docs/benchmarks.md), so a batch never holds
    # a partition long; 20 ms is the added latency per hop when the feed is quiet (4x the producer linger).
    batch_max_events: int = Field(default=500, ge=1, le=100_000, description="events per agent batch")
    batch_within_ms: int = Field(default=20, ge=1, le=60_000, description="longest wait to fill a batch (ms)")
    # Longest wait for the broker to acknowledge a batch's records before the worker fail-stops (exit 70)
    # and is restarted: 2 min covers a partition leader's failover (seconds in tests/scale/test_kafka_cluster.py)
    # with a wide margin, and is twice the producer's request timeout (60 s, streams/app.py), so a record
    # the producer gives up on is reported as refused, with its error, before this deadline.
    confirm_timeout_s: float = Field(default=120.0, gt=0, le=3600, description="broker acknowledgement deadline (s)")
    # The worker's event loop (gridhub/runner.py): libuv's (uvloop) used 16 % less CPU per document than
    # asyncio's on the hub's client stack (gridhub bench baseline, docs/benchmarks.md "Client stack").
    event_loop: str = Field(default="uvloop", pattern="^(uvloop|asyncio)$", description="uvloop | asyncio")
    # 10 minutes: a rebalance takes seconds, a big table's recovery from its changelog minutes
    # (a week of province-scale fusion state: gridhub bench state); longer is a stuck worker.
    rebalance_stall_seconds: float = Field(default=600.0, gt=0,
                                           description="/healthz says 'stalled' (503) after a rebalance this long")
    # 2 minutes: a worker with work commits every 2.8 s (Faust's broker_commit_interval); a partition
    # with records waiting and nothing committed for 40 commit intervals is not being read.  The lag is
    # measured every 15 s (streams/health.py LAG_INTERVAL_S), so the stop comes 120-135 s in.
    partition_stall_seconds: float = Field(default=120.0, gt=0,
                                           description="exit 70 when an assigned partition waits this long")
    # 1 s: how often routing's deadline clock wakes up; it scans at the rules' clock.scan_interval
    # (deploy/routing.yaml, reloaded without a restart), so this is the finest scan interval that works.
    routing_wake_seconds: float = Field(default=1.0, gt=0, description="how often routing's deadline clock wakes")
    # Loopback by default; 0.0.0.0 in a container so Prometheus can scrape /metrics.
    web_bind: str = "127.0.0.1"
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 18080
    # Secrets: "source=token,source=token"; never logged.
    # SecretStr (pydantic): repr, str and logs show '**********'; reveal() where a client needs it.
    ingest_tokens: SecretStr = Field(default=SecretStr(""), repr=False)
    feedback_tokens: SecretStr = Field(default=SecretStr(""), repr=False)
    pii_key: SecretStr = Field(default=SecretStr(DEV_PII_KEY), repr=False)
    # "production" fails closed (check_production): no development defaults for any secret.
    env: str = Field(default="development", description="development | production")
    routing_rules: Path = REPO_ROOT / "deploy" / "routing.yaml"
    # The hub's clock for deadlines and device liveness (gridhub/core/clock.py): "wall", or "event"
    # (the latest event time seen, minus clock_lag_ms) for compressed-time demos and backfills.
    # "auto" (issue 14): the wall clock while the input is live, event time while it is a replay or a
    # backfill (the newest event seen more than clock_replay_after_ms behind the wall clock).
    clock: str = Field(default="auto", pattern="^(wall|event|auto)$", description="auto | wall | event")
    clock_lag_ms: int = Field(default=0, ge=0, description="event clock: how far it stays behind the events")
    # 1 h: a live feed's newest record is seconds (sensors, fusion) to minutes (an agency typing its
    # feedback in late) behind the wall clock; an hour behind is a replay or an import, not a live feed.
    clock_replay_after_ms: int = Field(default=3_600_000, gt=0,
                                       description="auto clock: input this far behind the wall clock is a replay")
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = Field(default="auto", description="auto | json | console")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _SecretFileSource(settings_cls), env_settings, _YamlFileSource(settings_cls),
                file_secret_settings)

    def as_env(self) -> dict[str, str]:
        """``GRIDHUB_*`` variables that recreate these settings in a child process."""
        return {f"GRIDHUB_{name.upper()}": reveal(value) if name in SECRET_FIELDS else str(value)
                for name, value in self.model_dump().items()}

    def secret(self, name: str) -> str:
        """The plain text of secret setting ``name`` (e.g. ``settings.secret("pii_key")``)."""
        if name not in SECRET_FIELDS:
            raise KeyError(f"{name} is not a secret setting")
        return reveal(getattr(self, name))

    @model_validator(mode="after")
    def check_production(self) -> "Settings":
        """``GRIDHUB_ENV=production`` fails closed: every secret the hub would otherwise default is required.

        Names the missing setting and never its value.  Development keeps its defaults (the public
        PII key, ``dev-<principal>`` gateway tokens) so that a checkout runs without configuration.
        """
        if self.env not in ("development", "production"):
            raise ValueError(f"GRIDHUB_ENV must be 'development' or 'production', not {self.env!r}")
        if self.env != "production":
            return self
        problems = []
        key = reveal(self.pii_key)
        if not key or key == DEV_PII_KEY:
            problems.append("GRIDHUB_PII_KEY (or GRIDHUB_PII_KEY_FILE): the reporter hashes need a private key")
        if self.gateway_port != 0:
            for name in ("ingest_tokens", "feedback_tokens"):
                text = reveal(getattr(self, name))
                if not text.strip():
                    problems.append(f"GRIDHUB_{name.upper()} (or GRIDHUB_{name.upper()}_FILE): the gateway "
                                    "would accept development tokens (or set GRIDHUB_GATEWAY_PORT=0)")
                elif any(item.partition("=")[2].strip().startswith("dev-") for item in text.split(",")):
                    problems.append(f"GRIDHUB_{name.upper()}: a 'dev-' token is a development token")
        if problems:
            raise ValueError("GRIDHUB_ENV=production refuses to start without: " + "; ".join(problems))
        return self

    def kafka_client_options(self) -> dict[str, Any]:
        """Security keyword arguments for kafka-python and aiokafka clients (the same names in both)."""
        if self.kafka_security_protocol == "PLAINTEXT":
            return {}
        options: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol.startswith("SASL"):
            options.update(sasl_mechanism=self.kafka_sasl_mechanism, sasl_plain_username=self.kafka_sasl_username,
                           sasl_plain_password=reveal(self.kafka_sasl_password))
        if self.kafka_security_protocol.endswith("SSL"):
            import ssl

            options["ssl_context"] = ssl.create_default_context(cafile=self.kafka_ssl_cafile or None)
        return options

    # --- derived names ---------------------------------------------------------
    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.kafka_host}:{self.kafka_port}"

    def topic(self, name: str) -> str:
        """The physical topic for a contract topic name, in this namespace."""
        return f"{self.namespace}.{name}" if self.namespace else name

    @property
    def faust_app_id(self) -> str:
        return f"{self.namespace}.{self.app_id}" if self.namespace else self.app_id

    @property
    def faust_datadir(self) -> Path:
        """The worker's Faust data directory (RocksDB tables): one per namespace under the run dir."""
        return Path(self.run_dir) / "faust" / self.faust_app_id

    @property
    def ch_database(self) -> str:
        if not self.namespace:
            return self.clickhouse_database
        return f"{self.clickhouse_database}_{self.namespace.replace('-', '_').replace('.', '_')}"


def _allowed(field_name: str) -> str:
    """What a field accepts, in words an operator understands (from its type and constraints)."""
    info = Settings.model_fields[field_name]
    annotation = info.annotation
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(str(v) for v in get_args(annotation))
    words = {int: "an integer", float: "a number", bool: "true or false", Path: "a path", str: "text"}
    text = words.get(annotation, getattr(annotation, "__name__", str(annotation))) if isinstance(annotation, type) \
        else str(annotation)
    bounds = []
    for meta in info.metadata:
        for attr, word in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            value = getattr(meta, attr, None)
            if value is not None:
                bounds.append(f"{word} {value}")
    return text + (" " + " and ".join(bounds) if bounds else "")


def _origin(field_name: str) -> str:
    """Where a field's value came from: its environment variable, its _FILE variable or the config file."""
    variable = f"GRIDHUB_{field_name.upper()}"
    if variable in os.environ:
        return variable
    if os.environ.get(f"{variable}_FILE"):
        return f"{variable}_FILE={os.environ[f'{variable}_FILE']} (content)"
    if os.environ.get("GRIDHUB_CONFIG"):
        return f"GRIDHUB_CONFIG={os.environ['GRIDHUB_CONFIG']} key {field_name}"
    return variable


def describe_error(error: ValidationError) -> str:
    """One line for all the bad values: ``GRIDHUB_X='value': not allowed (allowed: ...)``; secrets are never shown."""
    parts = []
    for item in error.errors():
        field_name = str(item["loc"][0]) if item["loc"] else ""
        if field_name not in Settings.model_fields:
            parts.append(str(item["msg"]))
            continue
        origin = _origin(field_name)
        secret = not Settings.model_fields[field_name].repr
        value = "<hidden>" if secret or "(content)" in origin else repr(item.get("input"))
        where = origin if "(content)" in origin else f"{origin}={value}"
        reason = str(item["msg"]).split(", unable")[0]
        parts.append(f"{where}: {reason[:1].lower()}{reason[1:]} (allowed: {_allowed(field_name)})")
    return "; ".join(parts)


def load_settings(**overrides: Any) -> Settings:
    """``Settings(**overrides)``, with every configuration mistake as one :class:`SettingsError` line."""
    try:
        return Settings(**overrides)
    except SettingsError:
        raise
    except ValidationError as error:
        raise SettingsError(describe_error(error)) from None
    except ValueError as error:  # the sources' own errors (an unreadable _FILE)
        raise SettingsError(str(error)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once); raises :class:`SettingsError` for a bad value."""
    return load_settings()
