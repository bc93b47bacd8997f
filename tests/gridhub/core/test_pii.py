"""PII: hashing is keyed and normalised; masking finds phones, IDs and names in every format people
write, and changes nothing else (recall on the formats, precision on the hand-written dev set)."""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Any, Iterator

import pytest

from streams.ingest.normalize import Rejected, normalize
from gridhub.core.pii import (looks_like_person, mask_fields, mask_name, mask_phone, mask_text, masked_reporter,
                                names_in, phone_region_ok, reporter_hash)

DEVSET = Path(__file__).resolve().parents[2] / "data" / "devset"


def test_hash_is_keyed_and_normalised() -> None:
    a = reporter_hash(b"k1", "138 1234 5678", None)
    assert a == reporter_hash(b"k1", "+86 13812345678", "张三") == reporter_hash(b"k1", "13812345678", None)
    assert a == reporter_hash(b"k1", "１３８１２３４５６７８", None) == reporter_hash(b"k1", "0086-138-1234-5678", None)
    assert a != reporter_hash(b"k2", "13812345678", None)
    assert a is not None and len(a) == 64 and "13812345678" not in a
    assert reporter_hash(b"k1", None, " 张三 ") == reporter_hash(b"k1", "", "张三")
    assert reporter_hash(b"k1", None, None) is None


def test_mask_name_and_phone() -> None:
    assert mask_name("张三") == "张*" and mask_name("欧阳娜娜") == "欧***"
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("１３８１２３４５６７８") == "138****5678"
    assert mask_phone("0572-2345678") == "0572****5678"
    assert masked_reporter("张三", "13812345678") == "张* 138****5678"
    assert masked_reporter(None, None) is None


#: (format, text with the secret, the secret's digits or characters that must be gone, masked form kept)
FORMATS = [
    ("mobile", "手机13812345678", "12345678", "138****5678"),
    ("full-width mobile", "手机１３８１２３４５６７８", "12345678", "138****5678"),
    ("hyphens", "电话138-1234-5678", "1234-5678", "138****5678"),
    ("dots", "电话138.1234.5678", "1234.5678", "138****5678"),
    ("runs of spaces", "电话138  1234  5678", "1234  5678", "138****5678"),
    ("+86", "电话+86 138 1234 5678", "1234 5678", "138****5678"),
    ("+86 glued", "另一号码+8613912345678", "13912345678", "139****5678"),
    ("0086", "电话0086 13812345678", "13812345678", "138****5678"),
    ("landline, area code in brackets", "座机（0572）2123456", "2123456", "0572****3456"),
    ("landline, ASCII brackets", "座机(0572)2123456", "2123456", "0572****3456"),
    ("landline, spaces", "电话0571 8765 4321", "8765 4321", "0571****4321"),
    ("landline, hyphen", "座机0571-87654321", "87654321", "0571****4321"),
    ("landline, glued", "座机057187654321", "87654321", "0571****4321"),
    ("400 hotline", "客服400-820-8820", "820-8820", "400****8820"),
    ("800 hotline", "免费电话800-820-8820", "820-8820", "800****8820"),
    ("local number after 电话", "电话 2123456", "2123456", "****3456"),
    ("ID, 18 digits", "身份证330102199001011234", "19900101", "330102********1234"),
    ("ID, 18 digits with X", "身份证33010219900101123X", "19900101", "330102********123X"),
    ("ID, spaced 6-4-4-4", "身份证 330102 1990 0101 1234", "1990 0101", "330102********1234"),
    ("ID, spaced 6-8-4", "身份证330102 19900101 1234", "19900101", "330102********1234"),
    ("ID, 15 digits", "身份证330102900101123", "900101", "330102*****1123"),
    ("ID, full-width", "身份证３３０１０２１９９００１０１１２３４", "19900101", "330102********1234"),
]


@pytest.mark.parametrize("kind,text,secret,masked", FORMATS, ids=[f[0] for f in FORMATS])
def test_every_phone_and_id_format_is_masked(kind: str, text: str, secret: str, masked: str) -> None:
    out = mask_text(text)
    digits = re.sub(r"\D", "", secret)
    assert secret not in out and digits not in re.sub(r"\D", "", out.replace("*", "")), out
    assert masked in out, out


NAMES = [
    ("联系人：王小明，电话", "王小明", "联系人：王**，电话"),
    ("联系人:王小明", "王小明", "联系人:王**"),
    ("业主王建国反映楼道堆物", "王建国", "业主王**反映楼道堆物"),
    ("老板沈卫东欠他工资", "沈卫东", "老板沈**欠他工资"),
    ("老板叫褚建明，手机", "褚建明", "老板叫褚**，手机"),
    ("户主李小红说家里漏水", "李小红", "户主李**说家里漏水"),
    ("车主欧阳娜娜把车推走", "欧阳娜娜", "车主欧***把车推走"),
    ("房东戴建林，电话打不通", "戴建林", "房东戴**，电话打不通"),
    ("姓名：张三", "张三", "姓名：张*"),
]


@pytest.mark.parametrize("text,name,expected", NAMES, ids=[n[1] for n in NAMES])
def test_names_after_labels_are_masked(text: str, name: str, expected: str) -> None:
    assert mask_text(text) == expected


@pytest.mark.parametrize("text", [
    "来电人说他在许村上班", "来电人称小区里两户人家", "来电人反映王店镇工业园门口积水", "负责人姓周，电话打不通",
    "联系人：王先生", "老板电话关机", "业主应该自己清理", "老板娘说报警器在叫", "来电人要求回电",
    "金额12345元，日期2026-09-21，3幢2单元，07:30", "工单编号JX2026120700392", "分类代码1601030",
    "来电人不愿留姓名", "网民留言称路灯不亮",
])
def test_ordinary_text_stays_intact(text: str) -> None:
    assert mask_text(text) == text


def test_known_names_masked_in_text() -> None:
    assert mask_text("李四说门口有人占道", ("李四",)) == "李*说门口有人占道"
    assert mask_text("门口有人占道", ("李",)) == "门口有人占道"  # one-character names are not replaced
    assert mask_text("要求匿名回复", ("匿名",)) == "要求匿名回复"  # a caller field of 匿名 names nobody


def test_only_personal_data_changes_full_width_punctuation_stays() -> None:
    assert mask_text("（0572）2123456，在３幢") == "0572****3456，在３幢"


def test_mask_fields_covers_every_free_text_field() -> None:
    record = {"report_id": "13812345678", "status": "已联系13812345678", "unit": "ppm", "channel": None,
              "attachments": ["http://x/13912345678.jpg", "ok"], "owner": "王五"}
    mask_fields(record, ("王五",))
    assert record == {"report_id": "13812345678", "status": "已联系138****5678", "unit": "ppm", "channel": None,
                      "attachments": ["http://x/139****5678.jpg", "ok"], "owner": "王*"}


def test_looks_like_person() -> None:
    assert looks_like_person("王五") and not looks_like_person("湖州市某某物业服务有限公司")
    assert phone_region_ok()


def test_normalize_masks_registry_owner_and_address() -> None:
    registry = {"D1": {"deviceId": "D1", "deviceType": "smoke", "streetCode": "330502001",
                       "address": "人民路3号 王五家 电话0572-2123456", "owner": "王五", "ownerPhone": "13812345678",
                       "heartbeatSeconds": 300}}
    doc = {"deviceId": "D1", "deviceType": "smoke", "eventType": "fault", "eventTime": "2026-12-07T10:00:00+08:00",
           "unit": "联系13912345678"}
    out = normalize("sensors", json.dumps(doc, ensure_ascii=False).encode(), registry=registry,
                    received_at_ms=1_796_609_000_000, pii_key=b"k")
    event = out.device_event
    assert event is not None
    text = json.dumps(event, ensure_ascii=False)
    for secret in ("王五", "2123456", "13812345678", "13912345678"):
        assert secret not in text, text
    assert event["owner"] == "王*" and "人民路3号" in event["address"]


# --------------------------------------------------------------------------- dev-set precision


def _devset() -> Iterator[tuple[str, dict[str, Any]]]:
    for line in (DEVSET / "records.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        yield record["source"], record["doc"]


def _free_text(doc: dict[str, Any]) -> Iterator[str]:
    """The fields that reach the Report as text (title, description / content, address, status ...)."""
    for key in ("title", "description", "content", "address", "status", "categoryName", "eventSource"):
        if isinstance(doc.get(key), str):
            yield doc[key]


#: A piece of personal data in the dev set: its fake phones and ID numbers end in 0000, written with
#: spaces, hyphens or full-width digits; names are the callers / reporters or follow a label.
_GOLD_NUMBER = re.compile(r"[0-9０-９][0-9０-９ \-－]{5,}[0０]{4}")


def devset_precision() -> tuple[int, int, list[str]]:
    """(characters of dev-set text, characters changed outside personal data, the changes)."""
    registry = {r["deviceId"]: r for r in map(json.loads, (DEVSET / "registry.jsonl").read_text().splitlines())}
    total, wrong, changes = 0, 0, []
    for _, doc in _devset():
        names = names_in(doc, registry)
        for text in _free_text(doc):
            total += len(text)
            masked = mask_text(text, names)
            gold = [m.span() for m in _GOLD_NUMBER.finditer(text)]
            for op, a, b, _, _ in difflib.SequenceMatcher(None, text, masked, autojunk=False).get_opcodes():
                if op == "equal":
                    continue
                if any(s <= a and b <= e for s, e in gold):
                    continue
                piece = text[a:b]
                # A name: the masked span follows a label or is a name the document carries.
                if re.fullmatch(r"[\u4e00-\u9fff]{1,3}", piece) and "*" in masked:
                    changes.append(text[max(0, a - 4):b + 2])
                    continue
                wrong += b - a
                changes.append(f"NOT PII: {text[max(0, a - 6):b + 6]!r}")
    return total, wrong, changes


def test_devset_places_and_facts_survive() -> None:
    """Precision: of the dev set's ~40,000 characters of text, none outside personal data changes."""
    total, wrong, changes = devset_precision()
    names = sorted(c for c in changes if not c.startswith("NOT PII"))
    print(f"dev set: {total} characters of text, {wrong} changed outside personal data; names masked: {names}")
    assert wrong == 0, [c for c in changes if c.startswith("NOT PII")]
    # the labelled names of the dev set's prose (read by hand) are all found
    for name in ("徐建峰", "褚建明", "沈卫东", "戴建林", "刘建军"):
        assert any(name[0] in c for c in names), (name, names)


def test_devset_documents_leave_no_phone_or_labelled_name() -> None:
    """Recall on the dev set: no 0000-phone, ID or labelled name survives normalize."""
    registry = {r["deviceId"]: r for r in map(json.loads, (DEVSET / "registry.jsonl").read_text().splitlines())}
    leaks = []
    for source, doc in _devset():
        try:
            out = normalize(source, json.dumps(doc, ensure_ascii=False).encode(), registry=registry,
                            received_at_ms=1_796_600_000_000, pii_key=b"k")
        except Rejected:
            continue
        text = json.dumps([out.report, out.device_event], ensure_ascii=False)
        digits = re.sub(r"[ \-]", "", text)
        leaks += re.findall(r"(?<!\d)(?:1[3-9]\d{5}|0\d{6,9}|\d{14})0000(?!\d)", digits)
        leaks += [n for n in ("徐建峰", "褚建明", "沈卫东", "戴建林", "刘建军") if n in text]
    assert leaks == []
