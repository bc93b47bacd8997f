"""The codec round-trips every schema and resolves every historic writer schema."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest

from gridhub.core.codec import MAGIC, SCHEMA_DIR, AvroCodec, DecodeError, _fingerprint, codec

HISTORY = SCHEMA_DIR / "history"
NAMES = sorted(p.stem for p in SCHEMA_DIR.glob("*.avsc"))


def _example(schema: Any) -> dict[str, Any]:
    """A record with every required field filled by its type's simplest value."""
    simple = {"string": "x", "long": 1_700_000_000_000, "int": 2, "double": 120.1, "boolean": True, "bytes": b"\x00\xff"}
    out: dict[str, Any] = {}
    for field in schema["fields"]:
        if "default" in field:
            continue
        ftype = field["type"]
        if isinstance(ftype, dict) and ftype.get("type") == "array":
            out[field["name"]] = ["a"]
        elif isinstance(ftype, dict):
            out[field["name"]] = simple[ftype["type"]]
        else:
            out[field["name"]] = simple[ftype]
    return out


def _encode_with(path: Path, record: dict[str, Any]) -> bytes:
    schema = fastavro.parse_schema(json.loads(path.read_text()))
    buf = io.BytesIO()
    buf.write(MAGIC + _fingerprint(schema))
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()


@pytest.mark.parametrize("name", NAMES)
def test_round_trip(name: str) -> None:
    c = codec(name)
    record = _example(json.loads((SCHEMA_DIR / f"{name}.avsc").read_text()))
    decoded = c.decode(c.encode(record))
    for key, value in record.items():
        assert decoded[key] == value, key


@pytest.mark.parametrize("name", NAMES)
def test_current_schema_is_the_latest_history_version(name: str) -> None:
    versions = sorted(HISTORY.glob(f"{name}.v*.avsc"), key=lambda p: int(p.stem.rsplit(".v", 1)[1]))
    assert versions, f"{name} has no released version in schemas/avro/history/"
    assert json.loads(versions[-1].read_text()) == json.loads((SCHEMA_DIR / f"{name}.avsc").read_text())


@pytest.mark.parametrize("path", sorted(HISTORY.glob("*.avsc")), ids=lambda p: p.name)
def test_new_reader_reads_every_historic_writer(path: Path) -> None:
    name = path.name.split(".v")[0]
    record = _example(json.loads(path.read_text()))
    decoded = codec(name).decode(_encode_with(path, record))
    for key, value in record.items():
        assert decoded[key] == value
    current_fields = {f["name"]: f for f in json.loads((SCHEMA_DIR / f"{name}.avsc").read_text())["fields"]}
    written_fields = {f["name"] for f in json.loads(path.read_text())["fields"]}
    for missing in set(current_fields) - written_fields:
        assert decoded[missing] == current_fields[missing]["default"]


def test_report_v1_data_gets_case_id_default() -> None:
    record = _example(json.loads((HISTORY / "Report.v1.avsc").read_text()))
    decoded = codec("Report").decode(_encode_with(HISTORY / "Report.v1.avsc", record))
    assert decoded["case_id"] is None


def test_rejects_foreign_bytes() -> None:
    with pytest.raises(DecodeError, match="not an Avro single-object"):
        codec("Report").decode(b'{"json": true}')
    bogus = MAGIC + b"\x01" * 8 + b"\x00"
    with pytest.raises(DecodeError, match="unknown writer schema"):
        AvroCodec("Report").decode(bogus)
