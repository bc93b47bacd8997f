"""The one Avro codec of the hub.

Records on Kafka use Avro *single-object encoding* (Avro spec 1.12,
"Single object encoding"): the two marker bytes ``C3 01``, the 8-byte
little-endian CRC-64-AVRO fingerprint of the writer schema, then the binary
body.  No schema registry is needed, yet every record names the exact schema
it was written with, so a reader with a newer schema resolves old data (the
evolution rules are in ``schemas/README.md``).

Writer schemas live in ``schemas/avro/<Name>.avsc``; every schema a record
was ever written with is kept under ``schemas/avro/history/`` so that its
fingerprint stays resolvable after the current file changes.
"""

from __future__ import annotations

import io
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

import fastavro
import fastavro.schema

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas" / "avro"  # gridhub/core/codec.py -> repo root
MAGIC = b"\xc3\x01"  # Avro single-object encoding marker (spec 1.12)


class DecodeError(ValueError):
    """Bytes that are not a record this codec can read."""


def _is_millis(field_type: Any) -> bool:
    if isinstance(field_type, list):
        return any(_is_millis(t) for t in field_type)
    return isinstance(field_type, dict) and field_type.get("logicalType") == "timestamp-millis"


def _fingerprint(parsed: Any) -> bytes:
    canonical = fastavro.schema.to_parsing_canonical_form(parsed)
    return bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))[::-1]


class AvroCodec:
    """Encode / decode one record type; resolves any historic writer schema."""

    def __init__(self, name: str, schema_dir: Path = SCHEMA_DIR) -> None:
        self.name = name
        self.schema: Any = fastavro.parse_schema(fastavro.schema.load_schema(str(schema_dir / f"{name}.avsc")))
        self.fingerprint = _fingerprint(self.schema)
        # Timestamps stay epoch-millisecond ints inside the hub: pure
        # transforms compare and subtract them without tz arithmetic.
        fields: list[dict[str, Any]] = cast(dict[str, Any], self.schema)["fields"]
        self._millis_fields = [f["name"] for f in fields if _is_millis(f["type"])]
        self._writers: dict[bytes, Any] = {self.fingerprint: self.schema}
        history = schema_dir / "history"
        for path in sorted(history.glob(f"{name}.v*.avsc")) if history.is_dir() else []:
            old = fastavro.parse_schema(fastavro.schema.load_schema(str(path)))
            self._writers.setdefault(_fingerprint(old), old)

    def encode(self, record: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(MAGIC)
        buf.write(self.fingerprint)
        fastavro.schemaless_writer(buf, self.schema, record)
        return buf.getvalue()

    def decode(self, data: bytes) -> dict[str, Any]:
        if len(data) < 10 or data[:2] != MAGIC:
            raise DecodeError(f"not an Avro single-object {self.name} record")
        writer = self._writers.get(data[2:10])
        if writer is None:
            raise DecodeError(f"unknown writer schema fingerprint {data[2:10].hex()} for {self.name}")
        try:
            out = fastavro.schemaless_reader(io.BytesIO(data[10:]), writer, self.schema)
        except Exception as exc:  # fastavro raises several types on corrupt input
            raise DecodeError(f"corrupt {self.name} record: {exc}") from exc
        assert isinstance(out, dict)
        for name in self._millis_fields:
            value = out.get(name)
            if isinstance(value, datetime):
                out[name] = int(value.timestamp() * 1000)
        return out


@lru_cache(maxsize=None)
def codec(name: str) -> AvroCodec:
    """The shared codec for a schema name (``Report``, ``Case``, ``Dispatch`` ...)."""
    return AvroCodec(name)
