"""Quality gates: B-cubed F1 >= 0.95 on the hand-labelled set and on simulator ground truth.

These run the real normaliser and the real engine in process (``gridhub eval fusion``), so a
change to a rule, a threshold, the normaliser or the taxonomy that costs quality fails here.
"""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from gridhub.evaluation.fusion import read_jsonl, run

DATA = Path(__file__).resolve().parents[2] / "data" / "fusion"
RECORDS, LABELS = DATA / "handlabelled.records.jsonl", DATA / "handlabelled.labels.jsonl"


def test_handlabelled_set_has_the_hard_cases() -> None:
    labels = list(read_jsonl(LABELS))
    records = list(read_jsonl(RECORDS))
    assert len([lab for lab in labels if lab["incident"]]) >= 80
    assert any(r["source"] == "lifecycle" for r in records)
    assert any(r["source"] == "hotline-12345" and "lng" in r["doc"] for r in records)
    assert any(r["source"] == "hotline-12345" and "lng" not in r["doc"] for r in records)
    assert sum(1 for r in records if r["source"] == "sensors" and r["doc"]["eventType"] == "alarm") >= 15


def test_handlabelled_bcubed_f1() -> None:
    result = run(read_jsonl(RECORDS), read_jsonl(LABELS))
    assert result.rejected == 0
    assert result.scores.f1 >= 0.95, result.as_dict()


def test_handlabelled_needs_the_lifecycle_event() -> None:
    """The set really tests "closed cases stop joining": without the event, F and G merge."""
    records = [r for r in read_jsonl(RECORDS) if r["source"] != "lifecycle"]
    result = run(records, read_jsonl(LABELS))
    assert result.scores.precision < 1.0
    assert any({i for i, _ in c.parts} == {"F", "G"} for c in result.merged)


def test_simulator_bcubed_f1() -> None:
    from gridhub.simulate.generator import devices_for, generate

    args = (11, 1.0, 3 * 3600.0)
    sim = list(generate(*args))
    registry = {d.device_id: d.registry_row() for d in devices_for(*args)}
    result = run([r.record_line() for r in sim], [r.label() for r in sim], registry=registry)
    assert result.scores.items > 3000
    assert result.scores.f1 >= 0.95, (result.scores, result.as_dict()["merged"][:2])


def test_eval_command(tmp_path: Path) -> None:
    from gridhub.evaluation.cli import eval_group

    out = CliRunner().invoke(eval_group, ["fusion", "--records", str(RECORDS), "--labels", str(LABELS),
                                          "--min-f1", "0.95"])
    assert out.exit_code == 0, out.output
    assert "B-cubed precision" in out.output
    worse = CliRunner().invoke(eval_group, ["fusion", "--records", str(RECORDS), "--labels", str(LABELS),
                                            "--min-f1", "1.01"])
    assert worse.exit_code == 1
