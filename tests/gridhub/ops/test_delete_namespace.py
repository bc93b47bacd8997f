"""gridhub.core.kafka_admin.delete_namespace: a throw-away namespace leaves nothing behind (real servers)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gridhub.ops.common import admin_client
from gridhub.core.kafka_admin import delete_namespace
from gridhub.core.settings import Settings

pytestmark = pytest.mark.integration


def test_topics_and_faust_state_are_removed(settings: Settings, tmp_path: Path) -> None:
    from gridhub.supervisor import create_topics

    local = settings.model_copy(update={"run_dir": tmp_path})
    create_topics(local, ["reports"])
    state = local.faust_datadir / "v1" / "tables"
    state.mkdir(parents=True)
    (state / "fusion-state-0.db").write_bytes(b"rocksdb")
    other_namespace = local.run_dir / "faust" / "another.gridhub"
    other_namespace.mkdir(parents=True)

    deleted = delete_namespace(local)

    assert deleted == [local.topic("reports")]
    admin = admin_client(local)
    try:
        deadline = time.monotonic() + 15  # the controller deletes topics asynchronously
        while [t for t in admin.list_topics() if t.startswith(local.namespace + ".")]:
            assert time.monotonic() < deadline, "the namespace's topics are still listed after 15 s"
            time.sleep(0.5)
    finally:
        admin.close()
    assert not local.faust_datadir.exists()
    assert other_namespace.exists()  # only this namespace's state


def test_the_live_namespace_is_refused(settings: Settings) -> None:
    with pytest.raises(ValueError, match="live"):
        delete_namespace(settings.model_copy(update={"namespace": ""}))
