"""Every document of the bad-input corpus is rejected, with the reason the manifest names."""

from __future__ import annotations

import time

import pytest
from helpers.ingest_corpus import CORPUS_DIR, load_bad_inputs

from streams.ingest.normalize import Rejected, normalize

NOW = int(time.time() * 1000)
CORPUS = load_bad_inputs(NOW)


def test_manifest_lists_every_file() -> None:
    files = {p.name for p in CORPUS_DIR.iterdir() if p.name != "manifest.yaml"}
    assert files == {bad.name for bad in CORPUS}
    assert len(CORPUS) >= 40


@pytest.mark.parametrize("bad", CORPUS, ids=[b.name for b in CORPUS])
def test_rejected_with_reason(bad: object) -> None:
    from helpers.ingest_corpus import BadInput

    assert isinstance(bad, BadInput)
    with pytest.raises(Rejected) as info:
        normalize(bad.source, bad.value, registry={}, received_at_ms=NOW, pii_key=b"k")
    assert bad.reason in info.value.reason
    assert info.value.reason == str(info.value) and "\n" not in info.value.reason  # one sentence, one line
