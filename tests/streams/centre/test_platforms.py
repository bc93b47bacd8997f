"""The four platforms' names come from configuration (issue 15)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridhub.core.yamlconf import ConfigError
from streams.centre.platforms import DEFAULT_FILE, load_platforms, platforms


def test_deployed_names_cover_2021_and_legacy() -> None:
    deployed = platforms()
    assert {"综治工作", "监管执法", "应急管理", "公共服务", "市场监管", "综合执法", "便民服务"} == deployed.names
    assert deployed.canonical(" 监管执法 ") == "监管执法" and deployed.canonical("第五平台") is None
    assert load_platforms(DEFAULT_FILE) == deployed


def test_a_renamed_platform_is_a_configuration_change(tmp_path: Path) -> None:
    path = tmp_path / "platforms.yaml"
    path.write_text("platforms: [综治工作, 监管执法, 应急管理, 公共服务]\naliases:\n  基层治理综合信息平台: 综治工作\n",
                    encoding="utf-8")
    renamed = load_platforms(path)
    assert renamed.canonical("基层治理综合信息平台") == "综治工作"
    assert renamed.canonical("便民服务") is None  # this county dropped the legacy names
    path.write_text("platforms: [综治工作]\naliases:\n  新平台: 不存在\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="points to '不存在'"):
        load_platforms(path)


def test_normalize_reads_the_configured_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import json

    from streams.centre import platforms as mod
    from streams.ingest.normalize import Rejected, normalize

    path = tmp_path / "platforms.yaml"
    path.write_text("platforms: [综治工作]\naliases:\n  基层智治平台: 综治工作\n", encoding="utf-8")
    monkeypatch.setenv(mod.ENV, str(path))
    mod.platforms.cache_clear()
    try:
        doc = {"eventId": "EV-P1", "platform": "基层智治平台", "eventSource": "网格员巡查", "categoryCode": "x",
               "categoryName": "矛盾纠纷", "title": "邻里纠纷", "description": "两户邻居因漏水发生纠纷",
               "reportTime": 1_796_000_000_000, "streetCode": "330502001", "address": "月河街道某小区",
               "status": "待受理"}
        out = normalize("four-platforms", json.dumps(doc, ensure_ascii=False).encode(), registry={},
                        received_at_ms=1_796_000_000_000, pii_key=b"k")
        assert out.report is not None and out.report["platform"] == "综治工作"
        with pytest.raises(Rejected, match="unknown platform '便民服务'.*deploy/platforms.yaml"):
            normalize("four-platforms", json.dumps({**doc, "platform": "便民服务"}, ensure_ascii=False).encode(),
                      registry={}, received_at_ms=1_796_000_000_000, pii_key=b"k")
    finally:
        mod.platforms.cache_clear()
