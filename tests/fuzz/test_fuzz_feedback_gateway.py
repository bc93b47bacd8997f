"""Property tests of the other pure parsers that face the outside: agency feedback and the gateway's body split.

* ``streams.routing.lifecycle.parse_feedback``: the routing agent dead-letters
  ``Rejected`` and nothing else, so any other exception would stop its partition.
* ``connectors.gateway.app.split_items`` / ``item_key`` / ``check_feedback``: the
  gateway keeps each array element's exact bytes; a mis-sliced element would put
  bytes on the raw topic that the source never sent.
"""

from __future__ import annotations

import json
from typing import Any

from helpers.fuzz import FUZZ, JSON_VALUES, JUNK, SCALARS, dumps
from hypothesis import given
from hypothesis import strategies as st

from connectors.gateway.app import check_feedback, item_key, split_items
from gridhub.core.codec import codec
from gridhub.core.topics import SOURCES
from streams.routing.lifecycle import ACTIONS, Rejected, parse_feedback

VALID_FEEDBACK: dict[str, Any] = {"dispatchId": "d-1", "caseId": "c-1", "agency": "330502.zhzf", "action": "sign",
                                  "time": 1750035600000, "note": None}


def check_feedback_parse(value: bytes) -> None:
    try:
        out = parse_feedback(value)
    except Rejected as exc:
        assert str(exc).strip()
        return
    assert out["action"] in ACTIONS
    assert isinstance(out["time"], int)
    assert all(isinstance(out[k], str) and out[k] for k in ("dispatchId", "caseId", "agency"))


@FUZZ
@given(value=st.binary(max_size=512))
def test_feedback_arbitrary_bytes(value: bytes) -> None:
    check_feedback_parse(value)


@FUZZ
@given(doc=JSON_VALUES, ascii_only=st.booleans())
def test_feedback_arbitrary_json(doc: Any, ascii_only: bool) -> None:
    check_feedback_parse(dumps(doc, ascii_only=ascii_only))


FEEDBACK_FIELDS = st.sampled_from(["dispatchId", "caseId", "agency", "action", "time", "note", "deadline"])


@FUZZ
@given(action=st.sampled_from([*ACTIONS, "", "SIGN", "签收"]),
       changes=st.dictionaries(FEEDBACK_FIELDS, st.one_of(JUNK, st.just("2025-06-16T09:00:00+08:00")), max_size=3),
       drop=st.lists(FEEDBACK_FIELDS, max_size=2), ascii_only=st.booleans(), avro=st.booleans())
def test_feedback_mutations(action: str, changes: dict[str, Any], drop: list[str], ascii_only: bool,
                            avro: bool) -> None:
    doc = dict(VALID_FEEDBACK, action=action, note="原因" if action == "return" else None,
               deadline=1750122000000 if action == "extend" else None)
    doc.update(changes)
    for name in drop:
        doc.pop(name, None)
    check_feedback_parse(dumps(doc, ascii_only=ascii_only))
    if avro:  # the same record Avro-encoded, when the schema can hold it; then truncated and bit-flipped
        try:
            encoded = codec("Feedback").encode(doc)
        except Exception:  # not representable in Avro: nothing to test on that path
            return
        check_feedback_parse(encoded)
        check_feedback_parse(encoded[: len(encoded) // 2])
        check_feedback_parse(encoded[:10] + bytes(b ^ 0x5A for b in encoded[10:]))


# --------------------------------------------------------------------------- gateway


@FUZZ
@given(text=st.one_of(st.text(max_size=300), JSON_VALUES.map(lambda v: json.dumps(v, ensure_ascii=False)),
                      st.lists(JSON_VALUES, max_size=6).map(
                          lambda items: "[ " + " ,\n".join(json.dumps(i) for i in items) + " ]")))
def test_split_items_keeps_exact_item_bytes(text: str) -> None:
    try:
        is_array, items = split_items(text)
    except ValueError:  # json.JSONDecodeError and RecursionError-free bad JSON: a 400 answer
        return
    whole = json.loads(text.removeprefix("\ufeff"))
    if is_array:
        assert isinstance(whole, list) and len(items) == len(whole)
    else:
        assert len(items) == 1
        whole = [whole]
    for item, expected in zip(items, whole):
        raw_text = item.raw.decode("utf-8")
        assert raw_text in text, "the raw bytes must be a slice of the body as delivered"
        assert json.loads(raw_text) == item.value == expected or expected != expected  # NaN != NaN


@FUZZ
@given(source=st.sampled_from(SOURCES), value=JSON_VALUES)
def test_item_key_never_raises(source: str, value: Any) -> None:
    key, reason = item_key(source, value)
    assert (key is None) != (reason is None)
    if key is not None:
        assert key.strip()


@FUZZ
@given(changes=st.dictionaries(FEEDBACK_FIELDS, JUNK, max_size=3), whole=st.one_of(st.none(), SCALARS))
def test_check_feedback_never_raises(changes: dict[str, Any], whole: Any) -> None:
    doc: Any = dict(VALID_FEEDBACK, **changes) if whole is None else whole
    problem = check_feedback(doc, lambda agency: agency == "330502.zhzf")
    assert problem is None or (isinstance(problem, str) and problem)
