"""PII: hashing is keyed and normalised; masking finds phones, IDs and names in free text."""

from __future__ import annotations

from streams.ingest.pii import looks_like_person, mask_name, mask_phone, mask_text, masked_reporter, reporter_hash


def test_hash_is_keyed_and_normalised() -> None:
    a = reporter_hash(b"k1", "138 1234 5678", None)
    assert a == reporter_hash(b"k1", "+86 13812345678", "张三") == reporter_hash(b"k1", "13812345678", None)
    assert a != reporter_hash(b"k2", "13812345678", None)
    assert a is not None and len(a) == 64 and "13812345678" not in a
    assert reporter_hash(b"k1", None, " 张三 ") == reporter_hash(b"k1", "", "张三")
    assert reporter_hash(b"k1", None, None) is None


def test_mask_name_and_phone() -> None:
    assert mask_name("张三") == "张*" and mask_name("欧阳娜娜") == "欧***"
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("0572-2345678") == "0572****5678"
    assert masked_reporter("张三", "13812345678") == "张* 138****5678"
    assert masked_reporter(None, None) is None


def test_mask_text() -> None:
    text = ("联系人：王小明，手机 138-1234-5678，座机0571-87654321，身份证330102199001011234，"
            "另一号码+8613912345678，金额12345元，日期2026-09-21")
    out = mask_text(text)
    for secret in ("王小明", "138-1234-5678", "87654321", "19900101", "13912345678"):
        assert secret not in out
    assert "王**" in out and "138****5678" in out and "0571-****4321" in out and "330102********1234" in out
    assert "12345元" in out and "2026-09-21" in out  # ordinary numbers untouched


def test_known_names_masked_in_text() -> None:
    assert mask_text("李四说门口有人占道", ("李四",)) == "李*说门口有人占道"
    assert mask_text("门口有人占道", ("李",)) == "门口有人占道"  # one-character names are not replaced


def test_looks_like_person() -> None:
    assert looks_like_person("王五") and not looks_like_person("湖州市某某物业服务有限公司")
