"""Streaming readers for 12345 work-order exports (CSV, XLSX) and the row -> document mapping.

Pure functions and generators: no Kafka here, so the mapping is unit-tested on
its own and the importer only decides how to batch.  Rows are produced one at
a time (``csv.reader`` over a text stream, openpyxl in ``read_only`` mode), so a
file of a million rows never needs a million rows of memory.
"""

from __future__ import annotations

import codecs
import csv
import json
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import IO, Any, Iterator

#: CONTRACTS 1.2: the Chinese CSV/XLSX headers and the JSON field each one fills, in contract order.
HEADERS: dict[str, str] = {
    "工单编号": "orderNo", "受理渠道": "channel", "受理时间": "acceptTime", "诉求人": "caller",
    "联系电话": "phone", "诉求类型": "appealType", "诉求分类代码": "categoryCode", "诉求分类": "categoryName",
    "标题": "title", "诉求内容": "content", "事发地址": "address", "所属区县": "areaCode", "所属街道": "streetCode",
    "经度": "lng", "纬度": "lat", "紧急程度": "urgency", "办理时限": "deadline", "工单状态": "status",
    "回访满意度": "satisfaction",
}
FIELDS: tuple[str, ...] = tuple(HEADERS.values())
FIELD_HEADER = {v: k for k, v in HEADERS.items()}
REQUIRED = ("orderNo", "acceptTime", "content", "areaCode")
NUMERIC = ("lng", "lat")
#: Bytes inspected to choose the CSV encoding (enough to contain several full rows of Chinese text).
SNIFF_BYTES = 64 * 1024


def detect_encoding(path: Path) -> str:
    """``utf-8-sig`` (BOM), ``utf-8``, or ``gb18030`` (what Excel on Chinese Windows writes).

    GB18030 is a superset of GBK and GB2312, so it reads all three; a file that is
    valid UTF-8 in its first 64 KiB is taken as UTF-8 (GBK text is almost never
    valid UTF-8 by accident).
    """
    with path.open("rb") as f:
        head = f.read(SNIFF_BYTES)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)  # a cut character at the end is fine
        return "utf-8"
    except UnicodeDecodeError:
        return "gb18030"


@dataclass(frozen=True)
class Row:
    number: int                 # spreadsheet row number (the header is row 1)
    cells: dict[str, Any]       # header -> cell value as read


@dataclass(frozen=True)
class Mapped:
    row: Row
    doc: dict[str, Any] | None  # the JSON document, or None if rejected
    error: str | None

    @property
    def key(self) -> str | None:
        return None if self.doc is None else str(self.doc["orderNo"])

    def value(self) -> bytes:
        """Canonical bytes: contract field order, compact separators; the same row always gives the same bytes."""
        assert self.doc is not None
        return json.dumps(self.doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def original(self) -> bytes:
        """The row as read (JSON of header -> cell), for the dead-letter topic."""
        return json.dumps({k: _jsonable(v) for k, v in self.row.cells.items()}, ensure_ascii=False).encode("utf-8")


def _jsonable(v: Any) -> Any:
    if isinstance(v, (datetime, date, time)):
        return v.isoformat()
    return v


def _header_name(h: Any) -> str:
    return str(h).strip().lstrip("\ufeff") if h is not None else ""


def read_csv(path: Path, encoding: str | None = None) -> Iterator[Row]:
    enc = encoding or detect_encoding(path)
    with path.open("r", encoding=enc, newline="") as f:
        yield from _rows_from_csv(f)


def _rows_from_csv(f: IO[str]) -> Iterator[Row]:
    reader = csv.reader(f)
    header = next(reader, None)
    if header is None:
        return
    names = [_header_name(h) for h in header]
    for n, values in enumerate(reader, start=2):
        if not any(v.strip() for v in values):
            continue  # blank line
        yield Row(n, dict(zip(names, values)))


def read_xlsx(path: Path, sheet: str | None = None) -> Iterator[Row]:
    from openpyxl import load_workbook

    wb = load_workbook(path, read_only=True, data_only=True)
    try:
        ws = wb[sheet] if sheet else wb.active
        if ws is None:
            return
        rows = ws.iter_rows(values_only=True)
        header = next(rows, None)
        if header is None:
            return
        names = [_header_name(h) for h in header]
        for n, values in enumerate(rows, start=2):
            if not any(v not in (None, "") for v in values):
                continue
            yield Row(n, dict(zip(names, values)))
    finally:
        wb.close()


def xlsx_row_count(path: Path, sheet: str | None = None) -> int | None:
    """Data rows according to the sheet's stored dimension (for the progress bar), if known."""
    from openpyxl import load_workbook

    wb = load_workbook(path, read_only=True)
    try:
        ws = wb[sheet] if sheet else wb.active
        rows = getattr(ws, "max_row", None)
        return rows - 1 if isinstance(rows, int) and rows > 0 else None
    finally:
        wb.close()


def read_rows(path: Path, sheet: str | None = None) -> Iterator[Row]:
    """Rows of a ``.csv`` / ``.xlsx`` file (``.xlsm`` too), streamed."""
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        return read_xlsx(path, sheet)
    if suffix in (".csv", ".txt"):
        return read_csv(path)
    raise ValueError(f"{path.name}: unsupported file type '{suffix}' (use .csv or .xlsx)")


def _text(v: Any) -> str | None:
    """A cell as text: Excel numbers that are whole (order numbers, codes, phones) lose their '.0'."""
    if v is None:
        return None
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S")  # 12345 time format, Beijing time, no zone
    if isinstance(v, date):
        return v.strftime("%Y-%m-%d")
    text = str(v).strip()
    return text or None


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        raise ValueError
    if isinstance(v, (int, float)):
        return float(v)
    text = _text(v)
    return None if text is None else float(text)


def map_row(row: Row) -> Mapped:
    """One row -> the hotline JSON document of CONTRACTS 1.2, or the reason it is rejected.

    Headers may be the Chinese ones or the JSON field names; unknown columns are ignored.
    Only what the file format itself can break is checked here (required cells present,
    coordinates numeric); everything else is the normalize stage's to judge.
    """
    values: dict[str, Any] = {}
    for header, cell in row.cells.items():
        field = HEADERS.get(header) or (header if header in FIELD_HEADER else None)
        if field is not None and field not in values:
            values[field] = cell
    doc: dict[str, Any] = {}
    for field in FIELDS:
        cell = values.get(field)
        if field in NUMERIC:
            try:
                number = _number(cell)
            except ValueError:
                return Mapped(row, None, f"{FIELD_HEADER[field]} ({field}) '{cell}' is not a number")
            if number is not None:
                doc[field] = number
            continue
        text = _text(cell)
        if text is not None:
            doc[field] = text
    missing = [f"{FIELD_HEADER[f]} ({f})" for f in REQUIRED if f not in doc]
    if missing:
        return Mapped(row, None, f"missing {', '.join(missing)}")
    return Mapped(row, doc, None)
