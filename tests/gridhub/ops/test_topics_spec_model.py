"""deploy/topics.yaml through its typed model: every mistake is one error naming file:line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridhub.core.kafka_admin import SPEC_PATH, load_spec
from gridhub.core.yamlconf import ConfigError


def test_the_shipped_spec_is_valid() -> None:
    spec = load_spec(SPEC_PATH)
    assert {"raw.sensors", "reports", "dlq"} <= set(spec["topics"])
    assert type(spec["topics"]) is dict  # plain data, not the loader's line-tracking types


@pytest.mark.parametrize(("text", "where", "message"), [
    ("topics:\n  reports:\n    partitons: 3\n", ":3:", "topics.reports.partitons: unknown key"),
    ("topics:\n  reports: {}\n  cases:\n    partitions: 0\n", ":4:",
     "topics.cases.partitions: 0 is not a positive whole number (or existing)"),
    ("patterns:\n  \"dispatch.*\":\n    partitions: many\n", ":3:",
     "patterns.dispatch.*.partitions: 'many' is not a positive whole number (or existing)"),
    ("defaults:\n  partitions: existing\n", ":2:", "defaults.partitions: 'existing' is not a positive whole number"),
    ("defaults:\n  configs:\n    cleanup.policy: compacted\n", ":2:",
     "cleanup.policy 'compacted' is not one of delete, compact, compact,delete"),
    ("patterns:\n  \"dispatch.*\":\n    configs: {retention.ms: 30d}\n", ":3:",
     "retention.ms must be a whole number, not '30d'"),
    ("topics:\n  x:\n    use_defaults: \"no\"\n", ":3:", "topics.x.use_defaults: Input should be a valid boolean"),
    ("min_insync_replicas:\n  value: \"2\"\n", ":1:",
     "min_insync_replicas.when_replication_factor_at_least: Field required"),
    ("- a list\n", ":1:", "must be a YAML mapping"),
    ("topics:\n  reports: {\n", ":", "YAML error"),
])
def test_a_mistake_names_the_file_the_line_and_the_key(tmp_path: Path, text: str, where: str, message: str) -> None:
    path = tmp_path / "topics.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_spec(path)
    assert str(caught.value).startswith(f"{path}{where}"), str(caught.value)
    assert message in str(caught.value)
