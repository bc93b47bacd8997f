"""Loads the bad-input corpus (tests/data/bad_inputs/manifest.yaml) with its placeholders filled in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

CORPUS_DIR = Path(__file__).resolve().parents[1] / "data" / "bad_inputs"
BEIJING = timezone(timedelta(hours=8))


@dataclass(frozen=True)
class BadInput:
    name: str
    source: str
    reason: str
    value: bytes
    kafka: bool


def load_bad_inputs(now_ms: int) -> list[BadInput]:
    now = datetime.fromtimestamp((now_ms - 60_000) / 1000, tz=BEIJING)  # a minute ago: valid for any receipt
    fill = {
        b"{{NOW_MS}}": str(now_ms - 60_000).encode(),
        b"{{NOW_BEIJING}}": f"{now:%Y-%m-%d %H:%M:%S}".encode(),
        b"{{NOW_ISO}}": now.isoformat(timespec="seconds").encode(),
        b"{{NOW_NAIVE}}": now.replace(tzinfo=None).isoformat(timespec="seconds").encode(),
        b"{{PAD_300KIB}}": b"x" * (300 * 1024),
    }
    out = []
    for entry in yaml.safe_load((CORPUS_DIR / "manifest.yaml").read_text(encoding="utf-8")):
        value = (CORPUS_DIR / entry["file"]).read_bytes()
        for token, replacement in fill.items():
            value = value.replace(token, replacement)
        out.append(BadInput(entry["file"], entry["source"], entry["reason"], value, entry.get("kafka", True)))
    return out
