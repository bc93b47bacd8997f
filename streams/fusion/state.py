"""The storage behind fusion: a flat key -> bytes map.

The engine sees state only through :class:`KV` so that the unit tests run it
on a dict and the worker runs it on ONE Faust table (``streams/fusion/agents.py``).
One table, not one per index, on purpose: every write of one report goes to
the same changelog partition in order, so after a crash the recovered state
is always a *prefix* of the writes of the interrupted report, and the engine
writes in an order where every prefix is safe (case first, indexes next, the
``(source, source_ref)`` entry last; see ``engine.FusionEngine._link``).

Keys (``county`` = 6-digit county code; everything of one county lives in
that county's partition because Faust stores a table write in the partition
of the event being processed):

===========================  ==============================================
``c:<case_id>``              case state (JSON, :class:`CaseState` fields)
``s:<source>|<source_ref>``  the case a source record was linked to, its version
``d:<county>:<device_id>``   the device's current case
``g:<county>:<cx>:<cy>``     case ids whose centroid is in that grid cell
``a:<county>:<address>``     case ids at that normalised address (road + number)
``r:<county>:<road>``        case ids on that road
``p:<county>:<place>``       case ids at that named place (estate, landmark)
``v:<county>:<village>``     case ids at that village / community (reference names)
``h:<county>:<reporter>``    case ids of that reporter (keyed phone hash: callbacks)
``t:<county>:<street>``      case ids in that township (street code, or named in the text)
``n:<county>:<street>``      case ids in that township that have no coordinates
``x:<county>:<hour>``        expiry bucket: ``c:``/``s:`` entries to re-check at that event-time hour
``w:<county>``               the county's event-time watermark and last swept hour
===========================  ==============================================
"""

from __future__ import annotations

import json
from typing import Any, Iterator, Protocol


class KV(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes) -> None: ...

    def delete(self, key: str) -> None: ...


class MemoryKV:
    """The dict-backed :class:`KV` of unit tests, the evaluation and the benchmark."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def set(self, key: str, value: bytes) -> None:
        self.data[key] = value

    def delete(self, key: str) -> None:
        self.data.pop(key, None)

    def keys(self, prefix: str = "") -> Iterator[str]:
        return (k for k in self.data if k.startswith(prefix))

    def size_bytes(self) -> int:
        return sum(len(k.encode()) + len(v) for k, v in self.data.items())


def dumps(value: Any) -> bytes:
    # sort_keys + compact separators: the same state is always the same bytes.
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def loads(raw: bytes) -> Any:
    return json.loads(raw)


class JsonState:
    """Typed JSON helpers over a :class:`KV`."""

    def __init__(self, kv: KV) -> None:
        self.kv = kv

    def get(self, key: str) -> Any:
        raw = self.kv.get(key)
        return None if raw is None else loads(raw)

    def set(self, key: str, value: Any) -> None:
        self.kv.set(key, dumps(value))

    def delete(self, key: str) -> None:
        self.kv.delete(key)

    def list_add(self, key: str, item: str) -> None:
        items: list[str] = self.get(key) or []
        if item not in items:
            items.append(item)
            self.set(key, items)

    def list_remove(self, key: str, item: str) -> None:
        items: list[str] | None = self.get(key)
        if items and item in items:
            items.remove(item)
            if items:
                self.set(key, items)
            else:
                self.delete(key)
