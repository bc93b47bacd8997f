"""Kafka administration and clients for every hub process: topics as code, and the one client factory.

``deploy/topics.yaml`` is the wanted state of the broker; :func:`ensure_topics` makes the broker
match it where Kafka allows (create missing topics, set configs, add partitions) and reports the
differences it cannot fix: Kafka never removes partitions, and changing the replication factor is
a reassignment an operator plans, not a side effect of a deploy.  Services call it at start-up
(``ensure_topics_off_loop`` from the event loop) before a consumer subscribes; ``gridhub topics
ensure`` (gridhub/ops/cli.py) is the same thing as a command.

Every kafka-python client of the hub's tools and connectors is made here (:func:`admin_client`,
:func:`make_consumer`, :func:`make_producer`), with ``Settings.kafka_client_options()`` so that
the secured broker works everywhere.
"""

from __future__ import annotations

import asyncio
import copy
import fnmatch
import functools
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, OffsetSpec
from pydantic import (BaseModel, ConfigDict, Field, PositiveInt, StrictBool, StrictInt, StrictStr, ValidationError,
                      field_validator)

from gridhub.core.logging import get_logger
from gridhub.core.settings import REPO_ROOT, Settings, get_settings
from gridhub.core.yamlconf import ConfigError, line_of, load_yaml

log = get_logger(__name__)

# --- clients ---------------------------------------------------------------------------

def admin_client(settings: Settings, client_id: str = "gridhub-ops") -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id=client_id,
                            **settings.kafka_client_options())


def make_consumer(settings: Settings, client_id: str = "gridhub-ops", **overrides: Any) -> KafkaConsumer:
    """A group-less consumer: operator reads never move the hub's offsets."""
    config: dict[str, Any] = dict(
        bootstrap_servers=settings.kafka_bootstrap, client_id=client_id, group_id=None,
        enable_auto_commit=False, auto_offset_reset="earliest",
        # Operators inspect what is committed to the log, including records of
        # aborted transactions would be wrong: read_committed.
        isolation_level="read_committed",
        # Bulk reads: the default 500 records per poll made a partition-by-partition
        # export ~3.5x slower (measured: 50k records, 5.6 s -> 1.4 s); 5000 records
        # of a few KB each is a few MB of memory.
        max_poll_records=5000,
        **settings.kafka_client_options(),
    )
    config.update(overrides)
    return KafkaConsumer(**config)


def make_producer(settings: Settings, client_id: str = "gridhub-ops", **overrides: Any) -> KafkaProducer:
    """acks=all + idempotence: re-injected records survive a broker loss and
    keep their per-partition order even with several requests in flight."""
    config: dict[str, Any] = dict(
        bootstrap_servers=settings.kafka_bootstrap, client_id=client_id, acks="all",
        enable_idempotence=True, linger_ms=20,  # 20 ms: batches bulk re-injection without visible delay
        **settings.kafka_client_options(),
    )
    config.update(overrides)
    return KafkaProducer(**config)



SPEC_PATH = REPO_ROOT / "deploy" / "topics.yaml"
#: ``partitions: existing`` in a spec: never add partitions (Faust changelogs
#: must keep their table's source-topic partition count).
EXISTING = "existing"


@dataclass(frozen=True)
class TopicSpec:
    """The wanted state of one physical topic."""

    name: str
    partitions: int | None  # None: keep what exists (created with settings.partitions)
    replication_factor: int
    configs: dict[str, str]
    keyed: bool = True


@dataclass(frozen=True)
class Action:
    """One line of an ensure plan.

    ``kind``: ``create`` | ``alter`` | ``partitions`` (all fixable) or
    ``drift`` (cannot be fixed by this tool) or ``ok``.
    """

    topic: str
    kind: str
    detail: str
    changes: dict[str, Any] = field(default_factory=dict)


@dataclass
class EnsureReport:
    actions: list[Action]
    dry_run: bool

    def of(self, kind: str) -> list[Action]:
        return [a for a in self.actions if a.kind == kind]

    @property
    def created(self) -> list[str]:
        return [a.topic for a in self.of("create")]

    @property
    def altered(self) -> list[str]:
        return [a.topic for a in self.of("alter")]

    @property
    def partitions_added(self) -> list[str]:
        return [a.topic for a in self.of("partitions")]

    @property
    def problems(self) -> list[Action]:
        return self.of("drift")


# --- the spec ------------------------------------------------------------------------

#: A topic config value: Kafka stores strings; a YAML number is accepted and written as its text.
ConfigValue = StrictStr | StrictInt
#: Kafka's cleanup policies (a changelog may say "compact,delete").
CLEANUP_POLICIES = {"delete", "compact", "compact,delete", "delete,compact"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _WithConfigs(_Strict):
    configs: dict[str, ConfigValue] = Field(default_factory=dict)

    @field_validator("configs")
    @classmethod
    def _known_values(cls, configs: dict[str, Any]) -> dict[str, Any]:
        policy = configs.get("cleanup.policy")
        if policy is not None and str(policy).replace(" ", "") not in CLEANUP_POLICIES:
            raise ValueError(f"cleanup.policy {policy!r} is not one of delete, compact, compact,delete")
        for key, value in configs.items():
            # Kafka's *.ms / *.bytes settings are whole numbers (-1: unlimited).
            if key.endswith((".ms", ".bytes")) and not str(value).lstrip("-").isdigit():
                raise ValueError(f"{key} must be a whole number, not {value!r}")
        return configs


class TopicEntry(_WithConfigs):
    """One topic or pattern of deploy/topics.yaml."""

    partitions: PositiveInt | Literal["existing"] | None = None
    replication_factor: PositiveInt | None = None
    # false: only the entry's own configs (topics another tool configures, like Faust's changelogs).
    use_defaults: StrictBool = True


class Defaults(_WithConfigs):
    partitions: PositiveInt | None = None
    replication_factor: PositiveInt | None = None


class MinInsyncReplicas(_Strict):
    when_replication_factor_at_least: PositiveInt
    value: StrictStr


class TopicsFile(_Strict):
    """The typed model of deploy/topics.yaml: an unknown key or a wrong type is an error with file:line."""

    defaults: Defaults = Field(default_factory=Defaults)
    min_insync_replicas: MinInsyncReplicas | None = None
    topics: dict[str, TopicEntry | None] = Field(default_factory=dict)
    patterns: dict[str, TopicEntry | None] = Field(default_factory=dict)


def _line_at(data: Any, loc: Sequence[Any]) -> int | None:
    """The line of the deepest node of ``loc`` the loader recorded (pydantic's error location)."""
    line = line_of(data)
    node = data
    for key in loc:
        if isinstance(node, dict) and key in node:
            line = line_of(node, key) or line
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and key < len(node):
            line = line_of(node, key) or line
            node = node[key]
        else:
            break
    return line


def _plain(value: Any) -> Any:
    """LineDict / LineList -> dict / list (the cache hands out deep copies of plain data)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def validate_spec(path: Path, data: Any) -> dict[str, Any]:
    """``data`` (from :func:`gridhub.core.yamlconf.load_yaml`) checked against :class:`TopicsFile`."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(path, line_of(data), "must be a YAML mapping (defaults, min_insync_replicas, topics, "
                                               "patterns)")
    try:
        TopicsFile.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        loc = [part for part in first["loc"] if not isinstance(part, str) or not part.startswith(("literal[",
               "int", "str", "bool", "function-", "constrained-"))]
        where = ".".join(str(part) for part in loc)
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown key"
        elif loc and loc[-1] in ("partitions", "replication_factor"):
            message = f"{first.get('input')!r} is not a positive whole number" + (
                " (or existing)" if loc[-1] == "partitions" and loc[0] != "defaults" else "")
        raise ConfigError(path, _line_at(data, loc), f"{where}: {message}") from None
    return dict(_plain(data))

def load_spec(path: Path | None = None) -> dict[str, Any]:
    """deploy/topics.yaml (or ``path``) as a mapping; parsed again only when the file changes.

    Cached because routing resolves a spec per new dispatch topic on its hot path (the e2e
    profile: 142 YAML parses, 1.5 s of the worker's main thread in one quick run).  Callers get
    a deep copy, so the cache cannot be edited through a returned value.
    """
    path = path or SPEC_PATH
    stat = path.stat()
    return copy.deepcopy(_parse_spec(path, stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=8)
def _parse_spec(path: Path, mtime_ns: int, size: int) -> dict[str, Any]:
    return validate_spec(path, load_yaml(path))


def _physical(settings: Settings, name: str) -> str:
    """Contract name or pattern -> physical name; ``{app_id}`` names are already physical."""
    if "{app_id}" in name:
        return name.replace("{app_id}", settings.faust_app_id)
    return settings.topic(name)


def _is_physical(settings: Settings, name: str) -> bool:
    if name.startswith(settings.faust_app_id + "-"):
        return True
    return bool(settings.namespace) and name.startswith(settings.namespace + ".")


def _make(settings: Settings, spec: dict[str, Any], name: str, entry: dict[str, Any]) -> TopicSpec:
    defaults = spec.get("defaults") or {}
    partitions: Any = entry.get("partitions", defaults.get("partitions"))
    rf: Any = entry.get("replication_factor", defaults.get("replication_factor"))
    rf = int(rf) if rf is not None else settings.replication_factor
    # ``use_defaults: false``: topics another tool configures (Faust) get only
    # what their entry names, so ensure never fights their own settings.
    base = (defaults.get("configs") or {}) if entry.get("use_defaults", True) else {}
    configs = {str(k): str(v) for k, v in base.items()}
    configs.update({str(k): str(v) for k, v in (entry.get("configs") or {}).items()})
    min_isr = spec.get("min_insync_replicas") or {}
    if min_isr and rf >= int(min_isr.get("when_replication_factor_at_least", 3)):
        configs.setdefault("min.insync.replicas", str(min_isr.get("value", "2")))
    if partitions == EXISTING:
        parts: int | None = None
    else:
        parts = int(partitions) if partitions is not None else settings.partitions
    return TopicSpec(name=name, partitions=parts, replication_factor=rf, configs=configs)


def resolve_specs(settings: Settings, names: Iterable[str] | None = None,
                  existing: Iterable[str] = (), spec: dict[str, Any] | None = None) -> list[TopicSpec]:
    """The specs to apply.

    ``names=None``: every fixed topic of the spec plus every existing topic that
    matches a pattern.  Otherwise the given topics (contract or physical
    names); a name the spec does not know gets the defaults.
    """
    spec = spec if spec is not None else load_spec()
    fixed = {_physical(settings, n): (e or {}) for n, e in (spec.get("topics") or {}).items()}
    patterns = [(_physical(settings, p), (e or {})) for p, e in (spec.get("patterns") or {}).items()]

    def lookup(physical: str) -> TopicSpec:
        if physical in fixed:
            return _make(settings, spec, physical, fixed[physical])
        for pattern, entry in patterns:
            if fnmatch.fnmatchcase(physical, pattern):
                return _make(settings, spec, physical, entry)
        return _make(settings, spec, physical, {})

    if names is None:
        wanted = list(fixed)
        wanted += sorted(t for t in existing if t not in fixed
                         and any(fnmatch.fnmatchcase(t, p) for p, _ in patterns))
    else:
        wanted = [n if _is_physical(settings, n) else settings.topic(n) for n in names]
    return [lookup(n) for n in dict.fromkeys(wanted)]


def spec_partitions(settings: Settings, name: str) -> int:
    """The partition count deploy/topics.yaml gives ``name`` (contract name), for a topic to create."""
    spec = resolve_specs(settings, [name])[0]
    return spec.partitions or settings.partitions


# --- comparing with the broker ------------------------------------------------------------

def _config_satisfied(key: str, wanted: str, actual: str | None) -> bool:
    if key == "cleanup.policy" and actual is not None:
        # "compact,delete" satisfies "compact": Faust's windowed changelogs add delete.
        return set(wanted.split(",")) <= {p.strip() for p in actual.split(",")}
    return actual == wanted


def describe(admin: KafkaAdminClient, topics: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{topic: {partitions, replication_factor, configs}}`` for the existing ones."""
    if not topics:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for info in admin.describe_topics(list(topics)):
        if info.get("error_code", 0) != 0 or not info.get("partitions"):
            continue
        parts = info["partitions"]
        out[info["name"]] = {
            "partitions": len(parts),
            "replication_factor": min(len(p.get("replica_nodes") or []) for p in parts),
            "configs": {},
        }
    if out:
        described = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in out], config_filter="all")
        for name, configs in (described.get("topic") or {}).items():
            if name in out:
                out[name]["configs"] = {k: v.get("value") for k, v in configs.items()}
    return out


def plan(specs: Sequence[TopicSpec], state: dict[str, dict[str, Any]], settings: Settings) -> list[Action]:
    """Pure: what ensure would do, given the described broker state."""
    actions: list[Action] = []
    for spec in specs:
        current = state.get(spec.name)
        if current is None:
            partitions = spec.partitions or settings.partitions
            detail = f"partitions={partitions} rf={spec.replication_factor} " + " ".join(
                f"{k}={v}" for k, v in sorted(spec.configs.items()))
            actions.append(Action(spec.name, "create", detail.strip(),
                                  {"partitions": partitions, "replication_factor": spec.replication_factor,
                                   "configs": dict(spec.configs)}))
            continue
        fine = True
        diffs = {k: v for k, v in spec.configs.items() if not _config_satisfied(k, v, current["configs"].get(k))}
        if diffs:
            fine = False
            detail = ", ".join(f"{k}: {current['configs'].get(k)} -> {v}" for k, v in sorted(diffs.items()))
            actions.append(Action(spec.name, "alter", detail, {"configs": diffs}))
        have = current["partitions"]
        if spec.partitions is not None and have < spec.partitions:
            fine = False
            actions.append(Action(spec.name, "partitions",
                                  f"{have} -> {spec.partitions} partitions (keyed records of existing keys "
                                  "may move to another partition from now on)", {"partitions": spec.partitions}))
        elif spec.partitions is not None and have > spec.partitions:
            fine = False
            actions.append(Action(spec.name, "drift",
                                  f"has {have} partitions, spec says {spec.partitions}: Kafka cannot remove "
                                  "partitions (recreate the topic, or raise the spec to match)"))
        if current["replication_factor"] != spec.replication_factor:
            fine = False
            actions.append(Action(spec.name, "drift",
                                  f"replication factor {current['replication_factor']}, spec says "
                                  f"{spec.replication_factor}: change it with a partition reassignment "
                                  "(kafka-reassign-partitions), not here"))
        if fine:
            actions.append(Action(spec.name, "ok", "matches the spec"))
    return actions


def apply(admin: KafkaAdminClient, actions: Sequence[Action]) -> list[Action]:
    """Carry out the fixable actions; returns the ones that failed, as drift."""
    failed: list[Action] = []
    creates = {a.topic: {"num_partitions": a.changes["partitions"],
                         "replication_factor": a.changes["replication_factor"],
                         "configs": a.changes["configs"]} for a in actions if a.kind == "create"}
    if creates:
        result = admin.create_topics(creates, raise_errors=False)
        for topic in result.get("topics", []):
            code = topic.get("error_code", 0)
            # 36 TOPIC_ALREADY_EXISTS: a worker or another ensure won the race; fine.
            if code not in (0, 36):
                failed.append(Action(topic["name"], "drift",
                                     f"create failed: error {code} {topic.get('error_message') or ''}".strip()))
        admin.wait_for_topics(list(creates), timeout_ms=30000)
    alters = [a for a in actions if a.kind == "alter"]
    if alters:
        resources = [ConfigResource(ConfigResourceType.TOPIC, a.topic, dict(a.changes["configs"])) for a in alters]
        result = admin.alter_configs(resources, raise_on_unknown=False)
        for name, outcome in (result.get("topic") or {}).items():
            if outcome != "OK":
                failed.append(Action(name, "drift", f"alter configs failed: {outcome}"))
    grow = {a.topic: a.changes["partitions"] for a in actions if a.kind == "partitions"}
    if grow:
        response = admin.create_partitions(grow, raise_errors=False)
        for res in getattr(response, "results", []):
            if res.error_code != 0:
                failed.append(Action(res.name, "drift", f"add partitions failed: error {res.error_code} "
                                     f"{res.error_message or ''}".strip()))
                grow.pop(res.name, None)
        wait_for_partitions(admin, grow)
    return failed


def wait_for_partitions(admin: KafkaAdminClient, wanted: dict[str, int], timeout_s: float = 30.0) -> None:
    """Block until the metadata shows the new partitions (the controller
    acknowledges before every broker's metadata cache has them)."""
    deadline = time.monotonic() + timeout_s
    pending = dict(wanted)
    while pending and time.monotonic() < deadline:
        for info in admin.describe_topics(list(pending)):
            if len(info.get("partitions") or []) >= pending.get(info.get("name"), 1 << 30):
                pending.pop(info["name"], None)
        if pending:
            time.sleep(0.1)  # 100 ms: what kafka-python's wait_for_topics polls at
    if pending:
        log.warning("partitions_not_visible", topics=sorted(pending), seconds=timeout_s)


def delete_namespace(settings: Settings, *, databases: Sequence[str] | None = None) -> list[str]:
    """Delete every topic of ``settings.namespace``, drop its ClickHouse database (or ``databases``)
    and remove its Faust table state under ``settings.run_dir`` (workers must be stopped).

    For throw-away namespaces (tests, benchmarks, side-by-side replays); refuses the empty
    namespace, whose topics are the live contract topics.
    """
    if not settings.namespace:
        raise ValueError("refusing to delete the topics of the empty (live) namespace")
    from clickhouse_driver import Client

    admin = admin_client(settings)
    try:
        mine = [t for t in admin.list_topics() if t.startswith(settings.namespace + ".")]
        if mine:
            admin.delete_topics(mine, timeout_ms=30000)
    finally:
        admin.close()
    client = Client(host=settings.clickhouse_host, port=settings.clickhouse_port, user=settings.clickhouse_user,
                    password=settings.secret("clickhouse_password"))
    try:
        for database in databases if databases is not None else [settings.ch_database]:
            client.execute(f"DROP DATABASE IF EXISTS {database}")
    finally:
        client.disconnect()
    shutil.rmtree(settings.faust_datadir, ignore_errors=True)
    return mine


def ensure_topics(settings: Settings | None = None, names: Iterable[str] | None = None, *,
                  dry_run: bool = False, spec: dict[str, Any] | None = None,
                  admin: KafkaAdminClient | None = None) -> EnsureReport:
    """Make the broker match ``deploy/topics.yaml`` for ``names`` (default: all).

    Idempotent and safe to call from every process at start-up.  Never
    deletes a topic, never removes partitions, never changes a replication
    factor: those come back as ``drift`` actions in the report.
    """
    settings = settings or get_settings()
    own = admin is None
    admin = admin or admin_client(settings)
    try:
        # Named topics are described by name: listing every topic fetches the whole cluster's
        # metadata, which with 533 topics on the dev broker took a third of a worker's CPU samples
        # while routing created agency topics (docs/benchmarks.md); a province has ~2,600 of them.
        existing = admin.list_topics() if names is None else ()
        specs = resolve_specs(settings, names, existing, spec)
        state = describe(admin, [s.name for s in specs])
        actions = plan(specs, state, settings)
        if not dry_run:
            actions += apply(admin, actions)
        report = EnsureReport(actions, dry_run)
        log.info("topics_ensured", namespace=settings.namespace, dry_run=dry_run, created=len(report.created),
                 altered=len(report.altered), partitions_added=len(report.partitions_added),
                 drift=len(report.problems))
        return report
    finally:
        if own:
            admin.close()


async def ensure_topics_off_loop(settings: Settings, names: Sequence[str], *, failure_event: str,
                                 executor: Any = None) -> bool:
    """:func:`ensure_topics` from a running event loop: the blocking admin client runs in
    ``executor`` (default: the loop's), and a failure is logged as ``failure_event``, not raised.

    For the hub's services and agents, which must run even when the broker refuses a create
    or a config change (the producers' topics are also created by Faust, and ``gridhub topics
    ensure`` reports the drift).  Returns whether the topics were ensured.
    """
    try:
        await asyncio.get_running_loop().run_in_executor(executor, functools.partial(
            ensure_topics, settings, names=list(names)))
        return True
    except Exception as exc:
        log.warning(failure_event, topics=list(names), error=str(exc))
        return False


# --- listing --------------------------------------------------------------------------

def namespace_topics(settings: Settings, all_topics: Iterable[str], spec: dict[str, Any] | None = None) -> list[str]:
    """The topics that belong to this namespace (contract names when it is empty)."""
    topics = list(all_topics)
    if settings.namespace:
        return sorted(t for t in topics if t.startswith(settings.namespace + "."))
    known = {s.name for s in resolve_specs(settings, None, topics, spec)}
    return sorted(t for t in topics if t in known or t.startswith("dispatch."))


def end_offsets(admin: KafkaAdminClient, topics: dict[str, int]) -> dict[str, list[int]]:
    specs = {TopicPartition(t, p): OffsetSpec.LATEST for t, n in topics.items() for p in range(n)}
    found = admin.list_partition_offsets(specs) if specs else {}
    out: dict[str, list[int]] = {t: [0] * n for t, n in topics.items()}
    for tp, info in found.items():
        out[tp.topic][tp.partition] = info.offset
    return out


