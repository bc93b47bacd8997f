"""Report versions order deliveries as the sources mean them (issue 13, item 7)."""

from __future__ import annotations

from streams.ingest.versioning import (RANK_SHIFT, fingerprint, is_reopen, rank_of, status_rank,
                                       version_of)


def hotline(status: str, received: int) -> dict:
    return {"source": "hotline-12345", "source_ref": "JX1", "status": status, "received_at": received,
            "reported_at": 1_000, "version": received, "case_id": None, "text": "路灯不亮"}


def test_hotline_status_progression_beats_receipt_time() -> None:
    order = ["待派发", "已派发", "办理中", "已办结", "已回访"]
    assert [status_rank("hotline-12345", s) for s in order] == [0, 1, 2, 3, 4]
    newer = version_of(hotline("已派发", 2_000))
    stale = version_of(hotline("待派发", 9_000))  # redelivered later, still older
    assert stale < newer
    assert rank_of(newer) == 1 and newer & ((1 << RANK_SHIFT) - 1) == 2_000


def test_four_platforms_status_then_report_time() -> None:
    base = {"source": "four-platforms", "source_ref": "E1", "received_at": 5_000, "reported_at": 1_000}
    handling = version_of({**base, "status": "处置中"})
    pending = version_of({**base, "status": "待处置", "received_at": 9_000})
    done = version_of({**base, "status": "已办结"})
    resubmitted = version_of({**base, "status": "待处置", "reported_at": 2_000})
    assert pending < handling < done and pending < resubmitted
    assert status_rank("four-platforms", "某平台自定义状态") == 0  # unknown: never overrides a known one


def test_sensor_version_is_receipt_time() -> None:
    assert version_of({"source": "sensors", "received_at": 7, "reported_at": 1}) == 7


def test_fingerprint_ignores_delivery_not_content() -> None:
    a, b = hotline("已派发", 2_000), hotline("已派发", 9_000)
    b["version"] = 123
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint({**a, "text": "路灯还是不亮"})
    assert fingerprint(a) != fingerprint({**a, "status": "办理中"})


def test_reopen_words() -> None:
    assert is_reopen("退回重办") and is_reopen("重新办理") and not is_reopen("已办结") and not is_reopen(None)
