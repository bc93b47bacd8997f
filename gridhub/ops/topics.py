"""Topics as code: ``deploy/topics.yaml`` -> the broker.

``gridhub topics ensure`` makes the broker match the spec where Kafka allows
it (create missing topics, set configs, add partitions) and reports the
differences it cannot fix: Kafka never removes partitions, and changing the
replication factor is a reassignment an operator plans, not a side effect of
a deploy.  ``ensure_topics(settings, names=None)`` is the same thing as a
function, for the demo, tests and services that create topics on demand
(``dispatch.<county>.<agency>``).
"""

from __future__ import annotations

import asyncio
import copy
import fnmatch
import functools
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import click
import yaml
from kafka import TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, OffsetSpec

from gridhub.logging import get_logger
from gridhub.ops.common import admin_client, render_table, settings_for
from gridhub.settings import REPO_ROOT, Settings, get_settings

log = get_logger(__name__)

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
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must be a YAML mapping")
    return data


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


# --- commands -------------------------------------------------------------------------------

@click.group("topics")
def topics() -> None:
    """Topics as code (deploy/topics.yaml): list, and make the broker match."""


@topics.command("ensure")
@click.argument("names", nargs=-1)
@click.option("--dry-run", is_flag=True, help="print the plan, change nothing")
@click.option("--strict", is_flag=True, help="exit 1 when a difference cannot be fixed")
@click.option("--namespace", default=None, help="another namespace than GRIDHUB_NAMESPACE")
@click.option("--spec", "spec_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="topics spec (default deploy/topics.yaml)")
@click.option("--dispatch", "with_dispatch", is_flag=True,
              help="also create every agency's dispatch.<agency> and feedback.<agency> topics ahead "
                   "(agency catalog of the routing rules)")
@click.option("--county", "counties", multiple=True, metavar="CODE",
              help="with --dispatch: only the agencies of these counties (repeatable)")
def ensure_cmd(names: tuple[str, ...], dry_run: bool, strict: bool, namespace: str | None,
               spec_path: Path | None, with_dispatch: bool, counties: tuple[str, ...]) -> None:
    """Create missing topics, set configs, add partitions; report what cannot be fixed.

    NAMES: contract names (``raw.sensors``, ``dispatch.330502.zhzf``); default
    every topic of the spec and existing ones matching its patterns.  ``--dispatch``
    creates the agencies' topics before the first case does (docs/scaling.md): routing
    otherwise creates each on first use, in the middle of the stream.
    """
    settings = settings_for(namespace)
    spec = load_spec(spec_path) if spec_path else None
    if counties and not with_dispatch:
        raise click.UsageError("--county selects the agencies of --dispatch; add --dispatch")
    dispatch_names: list[str] = []
    if with_dispatch:
        from gridhub.agencies import catalog_for_rules
        from gridhub.topics import dispatch_topic, feedback_topic

        try:
            agencies = catalog_for_rules(settings.routing_rules).dispatch_agencies(counties or None)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--county") from exc
        # feedback.<agency>: the agency's own feedback topic; routing's relay subscribes to those
        # that exist, by name (streams/routing/feedback.py), so they are created here, ahead.
        dispatch_names = [name for a in agencies for name in (dispatch_topic(a), feedback_topic(a))]
    report = ensure_topics(settings, list(names) or None, dry_run=dry_run, spec=spec)
    covered = {a.topic for a in report.actions}  # the spec pass already covers existing dispatch topics
    dispatch_names = [n for n in dispatch_names if settings.topic(n) not in covered]
    if dispatch_names:
        report.actions += ensure_topics(settings, dispatch_names, dry_run=dry_run, spec=spec).actions
    verbs = {"create": "create" if not dry_run else "would create",
             "alter": "alter" if not dry_run else "would alter",
             "partitions": "add partitions" if not dry_run else "would add partitions",
             "drift": "CANNOT FIX", "ok": "ok"}
    rows = [(verbs[a.kind], a.topic, a.detail) for a in report.actions]
    click.echo(render_table(rows, ["action", "topic", "detail"]))
    problems = report.problems
    if problems:
        click.echo(f"\n{len(problems)} difference(s) this tool cannot fix; see CANNOT FIX above.", err=True)
        if strict:
            sys.exit(1)


@topics.command("ls")
@click.option("--namespace", default=None, help="another namespace than GRIDHUB_NAMESPACE")
@click.option("--all", "show_all", is_flag=True, help="every topic on the broker, not only this namespace's")
@click.option("--partitions", "per_partition", is_flag=True, help="end offset of every partition")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per topic")
def ls_cmd(namespace: str | None, show_all: bool, per_partition: bool, as_json: bool) -> None:
    """Topics with partitions, replication, non-default configs and end offsets."""
    settings = settings_for(namespace)
    with_admin = admin_client(settings)
    try:
        everything = with_admin.list_topics()
        names = sorted(everything) if show_all else namespace_topics(settings, everything)
        state = describe(with_admin, names)
        offsets = end_offsets(with_admin, {t: s["partitions"] for t, s in state.items()})
        modified = with_admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in state], config_filter="modified") if state else {}
    finally:
        with_admin.close()
    rows = []
    for name in names:
        if name not in state:
            continue
        configs = {k: v.get("value") for k, v in (modified.get("topic", {}).get(name) or {}).items()}
        ends = offsets.get(name, [])
        if as_json:
            click.echo(json.dumps({"topic": name, "partitions": state[name]["partitions"],
                                   "replication_factor": state[name]["replication_factor"],
                                   "end_offsets": ends, "configs": configs}, ensure_ascii=False))
            continue
        ends_text = ",".join(str(e) for e in ends) if per_partition else str(sum(ends))
        rows.append((name, state[name]["partitions"], state[name]["replication_factor"], ends_text,
                     " ".join(f"{k}={v}" for k, v in sorted(configs.items()))))
    if not as_json:
        click.echo(render_table(rows, ["topic", "partitions", "rf",
                                       "end offsets" if per_partition else "end offsets (sum)", "configs"]))
