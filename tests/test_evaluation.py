"""pytorch_hmm.evaluation: scoring a folder of alignments against reference alignments."""

import json

import pytest

from pytorch_hmm.alignment import Segment, write_json, write_textgrid
from pytorch_hmm.errors import HMMValueError
from pytorch_hmm.evaluation import END, AlignmentEvaluation, LabelScore, evaluate_directories
from pytorch_hmm.metrics import strip_stress


def segs(*rows):
    return [Segment(label, start, end) for label, start, end in rows]


def grid(path, phones, duration, words=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    tiers = {"words": words or [Segment("w", phones[0].start, phones[-1].end)], "phones": phones}
    write_textgrid(path, tiers, duration)


def shifted(phones, by):
    return [Segment(s.unit, round(s.start + by, 6), round(s.end + by, 6)) for s in phones]


U1 = segs(("a", 0.0, 0.10), ("b", 0.10, 0.30), ("c", 0.30, 0.50))
U2 = segs(("a", 0.05, 0.20), ("d", 0.20, 0.40))  # a gap before and after
U3 = segs(("x", 0.0, 0.10), ("y", 0.10, 0.20), ("z", 0.20, 0.30))


def test_identical_directories_score_perfectly(tmp_path):
    for root in ("ref", "hyp"):
        grid(tmp_path / root / "spk1" / "u1.TextGrid", U1, 0.5)
        grid(tmp_path / root / "spk2" / "u2.TextGrid", U2, 0.6)
    res = evaluate_directories(tmp_path / "ref", tmp_path / "hyp")
    assert res.utterances == 2
    assert res.reference_boundaries == res.hypothesis_boundaries == 4 + 3
    assert res.accuracy == {0.01: 1.0, 0.02: 1.0, 0.025: 1.0, 0.05: 1.0}
    assert res.mae == 0.0 and (res.precision, res.recall, res.f1) == (1.0, 1.0, 1.0)
    assert res.problems == [] and res.missing == [] and res.extra == []


def test_every_boundary_shifted_by_15_ms(tmp_path):
    ref = segs(("a", 0.1, 0.2), ("b", 0.2, 0.35), ("c", 0.35, 0.5))  # gaps on both sides
    grid(tmp_path / "ref" / "u.TextGrid", ref, 1.0)
    grid(tmp_path / "hyp" / "u.TextGrid", shifted(ref, 0.015), 1.0)
    res = evaluate_directories(tmp_path / "ref", tmp_path / "hyp", tolerances=(0.01, 0.02))
    assert res.accuracy == {0.01: 0.0, 0.02: 1.0}
    assert res.mae == pytest.approx(0.015, abs=1e-9)
    assert res.f1 == 1.0
    assert [(s.label, s.count, s.matched) for s in res.labels] == [(END, 1, 1), ("a", 1, 1), ("b", 1, 1), ("c", 1, 1)]
    assert all(s.mae == pytest.approx(0.015, abs=1e-9) for s in res.labels)
    res = evaluate_directories(tmp_path / "ref", tmp_path / "hyp", f1_tolerance=0.01)
    assert res.f1 == 0.0 and all(s.matched == 0 and s.accuracy == 0.0 for s in res.labels)


@pytest.fixture
def mixed(tmp_path):
    """Three utterances whose pairs and differences are worked out by hand in the test."""
    grid(tmp_path / "ref" / "u1.TextGrid", U1, 0.5)
    grid(tmp_path / "ref" / "u2.TextGrid", U2, 0.6)
    grid(tmp_path / "ref" / "u3.TextGrid", U3, 0.3)
    # u1: boundaries 0, .10, .30, .50 -> 0, .112, .33, .50 (differences 0, 12, 30, 0 ms)
    grid(tmp_path / "hyp" / "s" / "u1.TextGrid", segs(("a", 0.0, 0.112), ("b", 0.112, 0.33), ("c", 0.33, 0.5)), 0.5)
    # u2: a and d hit, e inserted: pairs .05-.05, .20-.26, .40-.40; 5 hyp boundaries
    grid(tmp_path / "hyp" / "s" / "u2.TextGrid", segs(("a", 0.05, 0.26), ("d", 0.26, 0.40), ("e", 0.45, 0.5)), 0.6)
    # u3: only x hits: pairs 0-0 and .10-.30; ref .20 (z) and .30 (end) stay unpaired; 2 hyp boundaries
    grid(tmp_path / "hyp" / "s" / "u3.TextGrid", segs(("x", 0.0, 0.3)), 0.3)
    return tmp_path


def test_mixed_case_by_hand(mixed):
    res = evaluate_directories(mixed / "ref", mixed / "hyp")
    assert (res.utterances, res.reference_boundaries, res.hypothesis_boundaries) == (3, 11, 11)
    # differences of the 9 pairs: u1 0, .012, .03, 0; u2 0, .06, 0; u3 0, .2
    assert res.accuracy == pytest.approx({0.01: 5 / 11, 0.02: 6 / 11, 0.025: 6 / 11, 0.05: 7 / 11})
    assert res.mae == pytest.approx((0.012 + 0.03 + 0.06 + 0.2) / 9)
    assert (res.precision, res.recall, res.f1) == pytest.approx((6 / 11, 6 / 11, 2 * 6 / (11 + 11)))
    expected = [(END, 3, 2, 0.0), ("a", 2, 2, 0.0), ("b", 1, 1, 0.012), ("c", 1, 0, 0.03), ("d", 1, 0, 0.06),
                ("x", 1, 1, 0.0), ("y", 1, 0, 0.2), ("z", 1, 0, None)]
    assert [(s.label, s.count, s.matched) for s in res.labels] == [e[:3] for e in expected]
    for score, (_, count, matched, mae) in zip(res.labels, expected):
        assert score.accuracy == pytest.approx(matched / count)
        assert score.mae == (None if mae is None else pytest.approx(mae, abs=1e-9))
    # the breakdown adds up to the pooled numbers
    assert sum(s.matched for s in res.labels) / sum(s.count for s in res.labels) == pytest.approx(res.accuracy[0.02])


def test_format_table_and_json_round_trip(mixed):
    res = evaluate_directories(mixed / "ref", mixed / "hyp")
    table = res.format_table()
    assert "| accuracy within 10 ms | 45.5 % |" in table and "| MAE | 33.6 ms |" in table
    lines = table.splitlines()
    rows = lines[lines.index("| label | boundaries | within 20 ms | MAE |") + 2:]
    assert [r.split(" | ")[0][2:] for r in rows] == [END, "a", "b", "c", "d", "x", "y", "z"]
    assert "| c | 1 | 0.0 % | 30.0 ms |" in table and "| z | 1 | 0.0 % | - |" in table
    data = res.to_dict()
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert data["accuracy"]["0.02"] == pytest.approx(6 / 11)
    assert data["labels"][-1] == {"label": "z", "count": 1, "matched": 0, "accuracy": 0.0, "mae": None}


def test_missing_extra_and_bad_files_are_listed_and_the_rest_scored(tmp_path):
    ref, hyp = tmp_path / "ref", tmp_path / "hyp"
    for utt in ("good", "json_only", "corrupt", "no_tier", "empty_tier", "missing"):
        grid(ref / utt / f"{utt}.TextGrid", U1, 0.5)
    grid(ref / "a" / "twice.TextGrid", U1, 0.5)
    grid(ref / "b" / "twice.TextGrid", U1, 0.5)
    grid(hyp / "twice.TextGrid", U1, 0.5)
    grid(hyp / "good.TextGrid", U1, 0.5)
    write_json(hyp / "good.json", {"phones": shifted(U1, 0.1)}, 1.0)  # beside the TextGrid: not read
    write_json(hyp / "json_only.json", {"phones": shifted(U1[:2], 0.015)}, 0.5)
    (hyp / "corrupt.TextGrid").write_text("not a TextGrid\n", encoding="utf-8")
    write_textgrid(hyp / "no_tier.TextGrid", {"words": U1}, 0.5)
    write_textgrid(hyp / "empty_tier.TextGrid", {"words": U1, "phones": []}, 0.5)
    grid(hyp / "extra.TextGrid", U1, 0.5)
    (hyp / "notes.txt").write_text("ignored", encoding="utf-8")

    res = evaluate_directories(ref, hyp)
    assert res.missing == ["missing"] and res.extra == ["extra"]
    reasons = dict(res.problems)
    assert set(reasons) == {str(ref / "a" / "twice.TextGrid"), str(ref / "b" / "twice.TextGrid"),
                            str(hyp / "corrupt.TextGrid"), str(hyp / "no_tier.TextGrid"),
                            str(hyp / "empty_tier.TextGrid")}
    assert "'twice' appears in 2 folders of reference_dir" in reasons[str(ref / "a" / "twice.TextGrid")]
    assert "not a valid Praat TextGrid" in reasons[str(hyp / "corrupt.TextGrid")]
    assert "no tier 'phones' (tiers: 'words')" in reasons[str(hyp / "no_tier.TextGrid")]
    assert "tier 'phones' holds no labelled interval" in reasons[str(hyp / "empty_tier.TextGrid")]
    # scored: good (perfect) and json_only (a, b shifted by 15 ms, c deleted)
    assert res.utterances == 2 and (res.reference_boundaries, res.hypothesis_boundaries) == (8, 7)
    # json_only pairs: .0-.015, .10-.115, .30-.315 (differences 15 ms); ref .50 stays unpaired
    assert res.accuracy[0.01] == pytest.approx(4 / 8) and res.accuracy[0.02] == pytest.approx(7 / 8)
    assert res.mae == pytest.approx(3 * 0.015 / 7)
    text = res.format_table()
    assert "missing hypotheses (1): missing" in text and "extra hypotheses (1): extra" in text
    assert "problems (5):" in text


def test_words_tier_and_fold(tmp_path):
    words = segs(("hello", 0.0, 0.4), ("world", 0.4, 0.9))
    grid(tmp_path / "ref" / "u.TextGrid", segs(("HH", 0.0, 0.1), ("AH0", 0.1, 0.9)), 1.0, words=words)
    hyp_words = segs(("hello", 0.0, 0.43), ("world", 0.43, 0.9))
    grid(tmp_path / "hyp" / "u.TextGrid", segs(("HH", 0.0, 0.1), ("AH1", 0.1, 0.9)), 1.0, words=hyp_words)
    res = evaluate_directories(tmp_path / "ref", tmp_path / "hyp", tier="words", tolerances=(0.02, 0.05))
    assert res.accuracy == pytest.approx({0.02: 2 / 3, 0.05: 1.0}) and res.mae == pytest.approx(0.01)
    assert [s.label for s in res.labels] == [END, "hello", "world"]
    # phones: AH0 vs AH1 are different labels unless folded
    plain = evaluate_directories(tmp_path / "ref", tmp_path / "hyp")
    folded = evaluate_directories(tmp_path / "ref", tmp_path / "hyp", fold=strip_stress)
    assert [s.label for s in folded.labels] == [END, "AH", "HH"] and folded.accuracy[0.01] == 1.0
    assert "AH0" in [s.label for s in plain.labels]
    bad = evaluate_directories(tmp_path / "ref", tmp_path / "hyp", tier="syllables")
    assert bad.utterances == 0 and len(bad.problems) == 2 and all("no tier 'syllables'" in r for _, r in bad.problems)
    assert bad.accuracy == {0.01: None, 0.02: None, 0.025: None, 0.05: None} and bad.mae is None
    assert json.loads(json.dumps(bad.to_dict(), allow_nan=False))["f1"] is None


def test_no_common_utterance_gives_an_empty_result(tmp_path):
    grid(tmp_path / "ref" / "u1.TextGrid", U1, 0.5)
    grid(tmp_path / "hyp" / "u2.TextGrid", U1, 0.5)
    res = evaluate_directories(tmp_path / "ref", tmp_path / "hyp")
    assert isinstance(res, AlignmentEvaluation) and res.utterances == 0 and res.labels == []
    assert res.missing == ["u1"] and res.extra == ["u2"]
    assert res.format_table().startswith("0 utterances scored")


def test_errors_name_the_argument(tmp_path):
    grid(tmp_path / "ref" / "u.TextGrid", U1, 0.5)
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x", encoding="utf-8")
    ref = tmp_path / "ref"
    with pytest.raises(HMMValueError, match=r"reference_dir must be a folder .* does not exist"):
        evaluate_directories(tmp_path / "nope", ref)
    with pytest.raises(HMMValueError, match=r"hypothesis_dir must be a folder .* is not a folder"):
        evaluate_directories(ref, tmp_path / "file.txt")
    with pytest.raises(HMMValueError, match=r"hypothesis_dir .* holds no alignment files"):
        evaluate_directories(ref, tmp_path / "empty")
    with pytest.raises(HMMValueError, match=r"reference_dir must be a path"):
        evaluate_directories(3, ref)
    for tolerances in [(0.02, 0.0), (-0.01,), (float("nan"),), ("0.02",), ()]:
        with pytest.raises(HMMValueError, match="tolerances must be"):
            evaluate_directories(ref, ref, tolerances=tolerances)
    with pytest.raises(HMMValueError, match="f1_tolerance must be a positive finite number of seconds; got 0"):
        evaluate_directories(ref, ref, f1_tolerance=0)
    with pytest.raises(HMMValueError, match="tier must be a non-empty"):
        evaluate_directories(ref, ref, tier="")
    with pytest.raises(HMMValueError, match="fold must be"):
        evaluate_directories(ref, ref, fold="strip")


def test_breakdown_sorted_by_count_with_the_metrics_float_slack(tmp_path):
    """0.13 - 0.11 > 0.02 in floating point; metrics counts it within 20 ms, and so does the breakdown."""
    grid(tmp_path / "ref" / "u.TextGrid", segs(("z", 0.0, 0.11), ("a", 0.11, 0.2), ("z", 0.2, 0.3)), 0.3)
    grid(tmp_path / "hyp" / "u.TextGrid", segs(("z", 0.0, 0.13), ("a", 0.13, 0.2), ("z", 0.2, 0.3)), 0.3)
    res = evaluate_directories(tmp_path / "ref", tmp_path / "hyp")
    assert res.accuracy[0.01] == 0.75 and res.accuracy[0.02] == 1.0
    assert res.labels == [LabelScore("z", 2, 2, 1.0, 0.0), LabelScore(END, 1, 1, 1.0, 0.0),
                          LabelScore("a", 1, 1, 1.0, pytest.approx(0.02))]
