"""12345 file import: CSV (UTF-8, UTF-8 with BOM, GB18030) and XLSX with the Chinese headers."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import tracemalloc
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook

from connectors.hotline_files.importer import import_file
from connectors.hotline_files.reader import HEADERS, Row, detect_encoding, map_row, read_rows
from gridhub.core.dlq import parse_dead_letter_headers
from gridhub.core.settings import Settings

HEADER_ROW = ["工单编号", "受理渠道", "受理时间", "诉求人", "联系电话", "诉求类型", "诉求分类", "诉求内容",
              "事发地址", "所属区县", "所属街道", "经度", "纬度", "工单状态", "备注"]
GOOD = [
    ["202506160001", "电话", "2025-06-16 09:01:02", "张先生", "13800000001", "投诉", "市容环卫/占道经营",
     "人民路菜场门口占道经营严重", "吴兴区人民路菜场", "330502", "330502001", "120.0951", "30.8712", "已派发", "x"],
    ["202506160002", "微信", "2025-06-16 09:05:00", "李女士", "13800000002", "求助", "城乡建设/路灯照明",
     "凤凰路路灯不亮", "凤凰路", "330502", "", "", "", "待派发", ""],
]
BAD = [
    # row 4: no 诉求内容
    ["202506160003", "电话", "2025-06-16 09:06:00", "王先生", "", "投诉", "", "", "", "330502", "", "", "", "", ""],
    # row 5: 经度 not a number
    ["202506160004", "电话", "2025-06-16 09:07:00", "", "", "投诉", "", "噪音扰民", "", "330502", "", "东经120", "30.1",
     "", ""],
    # row 6: no 工单编号 and no 所属区县
    ["", "电话", "2025-06-16 09:08:00", "", "", "投诉", "", "垃圾", "", "", "", "", "", "", ""],
]


def write_csv(path: Path, rows: list[list[str]], encoding: str) -> Path:
    with path.open("w", encoding=encoding, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER_ROW)
        writer.writerows(rows)
    return path


def write_xlsx(path: Path, rows: list[list[Any]]) -> Path:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(HEADER_ROW)
    for row in rows:
        ws.append(row)
    wb.save(path)
    return path


def expected_doc(row: list[str]) -> dict[str, Any]:
    fields = {h: HEADERS.get(h) for h in HEADER_ROW}
    doc: dict[str, Any] = {}
    for header, cell in zip(HEADER_ROW, row):
        name = fields[header]
        if name and cell:
            doc[name] = float(cell) if name in ("lng", "lat") else cell
    return doc


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_csv_encodings_detected_and_headers_mapped(tmp_path: Path, encoding: str) -> None:
    path = write_csv(tmp_path / "orders.csv", GOOD + BAD, encoding)
    assert detect_encoding(path) == encoding
    mapped = [map_row(r) for r in read_rows(path)]
    assert [m.row.number for m in mapped] == [2, 3, 4, 5, 6]
    assert [m.doc for m in mapped[:2]] == [expected_doc(GOOD[0]), expected_doc(GOOD[1])]
    assert mapped[0].doc is not None and mapped[0].doc["lng"] == 120.0951   # a number, not text
    assert "备注" not in json.dumps(mapped[0].doc, ensure_ascii=False)      # unknown columns are not copied
    errors = [m.error for m in mapped[2:]]
    assert errors[0] is not None and "诉求内容" in errors[0]
    assert errors[1] is not None and "经度" in errors[1]
    assert errors[2] is not None and "工单编号" in errors[2] and "所属区县" in errors[2]


def test_xlsx_cells_typed_by_excel_become_contract_text(tmp_path: Path) -> None:
    # What Excel users produce: numeric order numbers and codes, a real datetime, float coordinates.
    row = [202506160009, "电话", datetime(2025, 6, 16, 9, 30, 5), "赵先生", 13900000000, "投诉", "环境保护/噪声污染",
           "工地夜间施工", "人民路1号", 330502, 330502001, 120.1, 30.8, "已派发", None]
    path = write_xlsx(tmp_path / "orders.xlsx", [row])
    [mapped] = [map_row(r) for r in read_rows(path)]
    assert mapped.doc == {
        "orderNo": "202506160009", "channel": "电话", "acceptTime": "2025-06-16 09:30:05", "caller": "赵先生",
        "phone": "13900000000", "appealType": "投诉", "categoryName": "环境保护/噪声污染", "content": "工地夜间施工",
        "address": "人民路1号", "areaCode": "330502", "streetCode": "330502001", "lng": 120.1, "lat": 30.8,
        "status": "已派发"}


def test_same_row_same_bytes_whatever_the_column_order() -> None:
    cells = dict(zip(HEADER_ROW, GOOD[0]))
    a = map_row(Row(2, cells))
    b = map_row(Row(2, dict(reversed(list(cells.items())))))
    assert a.value() == b.value() and a.key == b.key == "202506160001"


def test_reading_is_streamed(tmp_path: Path) -> None:
    """Memory stays flat however long the file is: rows are read one at a time."""
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER_ROW)
        for i in range(60_000):
            writer.writerow([f"2025{i:08d}", *GOOD[0][1:]])
    size = path.stat().st_size
    tracemalloc.start()
    n = sum(1 for r in read_rows(path) if map_row(r).doc is not None)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert n == 60_000
    assert peak < size / 10, (peak, size)   # the whole file in memory would be several times its size


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_import_produces_keyed_documents_idempotently_and_dead_letters_bad_rows(
        settings: Settings, consume: Callable[..., list[Any]], tmp_path: Path, kind: str) -> None:
    path = (write_csv(tmp_path / "orders.csv", GOOD + BAD, "gb18030") if kind == "csv"
            else write_xlsx(tmp_path / "orders.xlsx", GOOD + BAD))
    summary = import_file(settings, path, batch_size=2, progress=False)
    assert (summary.rows_read, summary.produced, summary.rejected) == (5, 2, 3)
    assert [n for n, _ in summary.errors] == [4, 5, 6]

    first = consume("raw.hotline-12345", 2, timeout=20)
    assert sorted((m.key, json.loads(m.value)) for m in first) == sorted(
        [(b"202506160001", expected_doc(GOOD[0])), (b"202506160002", expected_doc(GOOD[1]))], key=lambda kv: kv[0])
    dead = consume("dlq", 3, timeout=20)
    infos = sorted(((parse_dead_letter_headers(m.headers), m.value) for m in dead), key=lambda iv: int(iv[0].extra["row"]))
    assert [int(i.extra["row"]) for i, _ in infos] == [4, 5, 6]
    assert all(i.stage == "file-import" and i.extra["file"] == path.name for i, _ in infos)
    assert json.loads(infos[1][1])["经度"] == "东经120"    # the original cells, as read

    # Re-import: the very same keys and bytes again (the hub sees a redelivery, not new reports).
    again = import_file(settings, path, batch_size=1000, progress=False)
    assert again.produced == 2
    both = consume("raw.hotline-12345", 4, timeout=20)
    pairs = sorted((m.key, m.value) for m in both)
    assert len(pairs) == 4 and pairs[0] == pairs[1] and pairs[2] == pairs[3]


@pytest.mark.integration
def test_cli_prints_summary_with_row_numbers(settings: Settings, consume: Callable[..., list[Any]],
                                             tmp_path: Path) -> None:
    path = write_csv(tmp_path / "export.csv", GOOD + BAD, "utf-8-sig")
    gridhub = Path(__file__).resolve().parents[3] / ".venv" / "bin" / "gridhub"
    out = subprocess.run([str(gridhub), "import", "12345", str(path), "--no-progress"],
                         env={**os.environ, **settings.as_env()}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "5 rows read, 2 produced, 3 rejected" in out.stdout
    for number in (4, 5, 6):
        assert f"row {number}:" in out.stdout
    assert len(consume("raw.hotline-12345", 2, timeout=20)) == 2
