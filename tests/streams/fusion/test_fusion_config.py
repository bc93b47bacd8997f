"""deploy/fusion.yaml is validated by a typed model; a bad value names file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridhub.core.yamlconf import ConfigError
from streams.fusion.config import DEFAULT_PATH, load_config


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    text = DEFAULT_PATH.read_text(encoding="utf-8")
    assert old in text
    out = tmp_path / "fusion.yaml"
    out.write_text(text.replace(old, new, 1), encoding="utf-8")
    return out


def _line_of(path: Path, needle: str) -> int:
    return next(n for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if needle in line)


def test_committed_config_is_valid() -> None:
    cfg = load_config()
    assert cfg.concepts and cfg.generic_concepts <= set(cfg.concepts)
    assert 0 < cfg.threshold <= 1


@pytest.mark.parametrize("old,new,needle,message", [
    ("threshold: 0.5", "threshold: high", "threshold: high", "threshold"),
    ("  fire:             {window_h: 6,", "  fire:             {window_h: -6,", "window_h: -6", "window_h"),
    ("far_m: 1500", "far_mm: 1500", "far_mm", "far_mm"),
    ("  human: {space: 0.50, text: 0.35, time: 0.15}", "  human: {space: 0.50, text: 0.35, time: 0.35}",
     "time: 0.35}", "sum to 1"),
    ("generic_concepts: [noise,", "generic_concepts: [nosie,", "generic_concepts", "unknown concepts"),
])
def test_bad_values_name_file_and_line(tmp_path: Path, old: str, new: str, needle: str, message: str) -> None:
    path = _variant(tmp_path, old, new)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.path == str(path)
    assert message in str(err.value)
    if message != "unknown concepts":  # a cross-field check names the mapping, not the line
        assert err.value.line == _line_of(path, needle)
