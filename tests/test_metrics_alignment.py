"""Alignment metrics: hand-worked cases, properties drawn by hypothesis, independent references
(brute-force maximum matching, a recursive edit distance), doctests, one test per error message."""

from __future__ import annotations

import doctest
import functools

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

import pytorch_hmm.metrics.alignment as alignment_module
import pytorch_hmm.metrics.sequence as sequence_module
from pytorch_hmm.errors import HMMDimensionError, HMMDtypeError, HMMTypeError, HMMValueError
from pytorch_hmm.metrics.alignment import (
    _boundaries,
    _greedy,
    _parse,
    boundary_accuracy,
    boundary_f1,
    boundary_mae,
    duration_accuracy,
    frame_accuracy,
    phone_error_rate,
    strip_stress,
)
from pytorch_hmm.metrics.sequence import align_sequences, edit_distance

REF = [("k", 0.0, 0.10), ("ae", 0.10, 0.25), ("t", 0.25, 0.40)]
LABELS = ["a", "b", "c"]


@st.composite
def segmentations(draw, max_len: int = 5, gaps: bool = True):
    """Segments on a 1 ms grid (times exact in milliseconds, divided by 1000)."""
    n = draw(st.integers(1, max_len))
    t, out = draw(st.integers(0, 30)), []
    for _ in range(n):
        if gaps and draw(st.booleans()):
            t += draw(st.integers(1, 30))
        d = draw(st.integers(0, 60))
        out.append((draw(st.sampled_from(LABELS)), t / 1000, (t + d) / 1000))
        t += d
    return out


def _max_matching(rt, ht, tol):
    """Brute force: the largest one-to-one set of pairs within tol."""

    @functools.lru_cache(None)
    def best(i, used):
        if i == len(rt):
            return 0
        out = best(i + 1, used)
        for j in range(len(ht)):
            if not used >> j & 1 and abs(rt[i] - ht[j]) <= tol + 1e-9:
                out = max(out, 1 + best(i + 1, used | 1 << j))
        return out

    return best(0, 0)


def _lev(a, b):
    """Independent edit distance (memoised recursion on suffixes)."""

    @functools.lru_cache(None)
    def d(i, j):
        if i == len(a) or j == len(b):
            return len(a) - i + len(b) - j
        return min(d(i + 1, j) + 1, d(i, j + 1) + 1, d(i + 1, j + 1) + (a[i] != b[j]))

    return d(0, 0)


# ---------------------------------------------------------------------------------------------
# Hand-worked cases


def test_identical_inputs_are_perfect():
    assert boundary_accuracy(REF, REF) == {0.01: 1.0, 0.02: 1.0, 0.025: 1.0, 0.05: 1.0}
    assert boundary_f1(REF, REF, 0.0) == (1.0, 1.0, 1.0)
    assert boundary_mae(REF, REF) == 0.0
    assert frame_accuracy(REF, REF) == 1.0
    assert duration_accuracy(REF, REF) == 1.0
    assert phone_error_rate(REF, REF) == 0.0


def test_substitution_and_label_awareness():
    # hyp substitutes the middle phone: only the hits k and t pair boundaries
    hyp = [("k", 0.0, 0.10), ("ih", 0.10, 0.25), ("t", 0.25, 0.40)]
    assert boundary_accuracy(hyp, REF, (0.0,)) == {0.0: 1.0}  # k's offset and t's onset
    assert phone_error_rate(REF, hyp) == pytest.approx(1 / 3)
    assert duration_accuracy(REF, hyp) == pytest.approx(2 / 3)
    # completely different labels: no hits, nothing matched unless matching by time
    other = [("x", 0.0, 0.10), ("y", 0.10, 0.25), ("z", 0.25, 0.40)]
    assert boundary_f1(REF, other) == (0.0, 0.0, 0.0)
    assert boundary_f1(REF, other, label_aware=False) == (1.0, 1.0, 1.0)
    assert np.isnan(boundary_mae(REF, other))


def test_insertion_keeps_matching_one_to_one():
    # the seed's bug: two hyp boundaries near one ref boundary must not both count
    hyp = [("k", 0.0, 0.095), ("ae", 0.095, 0.105), ("ae", 0.105, 0.25), ("t", 0.25, 0.40)]
    p, r, f = boundary_f1(REF, hyp, 0.02, label_aware=False)
    assert (p, r) == (4 / 5, 1.0)
    p, r, f = boundary_f1(REF, hyp, 0.02)
    assert p <= 1 and r <= 1 and f == pytest.approx(2 * p * r / (p + r))


def test_gaps_are_boundaries_and_frames():
    ref = [("a", 0.0, 0.1), ("b", 0.2, 0.3)]  # boundaries 0, .1, .2, .3
    assert len(_boundaries(_parse(ref, "ref", None))[0]) == 4
    hyp = [("a", 0.0, 0.1), ("b", 0.1, 0.3)]  # boundaries 0, .1, .3
    assert boundary_f1(ref, hyp, 0.01) == pytest.approx((1.0, 0.75, 6 / 7))
    # frames .1-.2: ref "none", hyp "b" -> 10 of 30 frames wrong
    assert frame_accuracy(ref, hyp) == pytest.approx(20 / 30)


def test_frames_past_hyp_end_are_errors():
    hyp = [("k", 0.0, 0.10), ("ae", 0.10, 0.25)]
    assert frame_accuracy(REF, hyp) == pytest.approx(25 / 40)
    assert frame_accuracy(REF, hyp, frame_shift=0.05) == pytest.approx(5 / 8)


def test_strip_stress_fold():
    ref = [("K", 0.0, 0.1), ("AE1", 0.1, 0.2), ("T", 0.2, 0.3)]
    hyp = [("K", 0.0, 0.1), ("AE0", 0.1, 0.2), ("T", 0.2, 0.3)]
    assert phone_error_rate(ref, hyp) == pytest.approx(1 / 3)
    assert phone_error_rate(ref, hyp, fold=strip_stress) == 0.0
    assert duration_accuracy(ref, hyp) == pytest.approx(2 / 3)
    assert duration_accuracy(ref, hyp, fold=strip_stress) == 1.0
    assert frame_accuracy(ref, hyp, fold=strip_stress) == 1.0


def test_time_types_and_objects():
    class Span:
        def __init__(self, token, start, end):
            self.token, self.start, self.end = token, start, end

    ref = [(1, torch.tensor(0.0), np.float32(0.1)), (2, np.float64(0.1), torch.tensor(0.3, dtype=torch.float64))]
    hyp = [Span(1, 0, 0.1), Span(2, 0.1, 0.3)]
    assert boundary_f1(ref, hyp, 0.0) == (1.0, 1.0, 1.0)


def test_segments_of_the_aligners_are_segmentations():
    """alignment.Segment / PhoneInterval (``unit``) read as (label, start, end), like tuples."""
    from pytorch_hmm.alignment import PhoneInterval, Segment

    hyp = [Segment("k", 0.0, 0.12), Segment("ae", 0.12, 0.26), Segment("t", 0.26, 0.40)]
    ref = [PhoneInterval("k", 0.0, 0.1), PhoneInterval("ae", 0.1, 0.25), PhoneInterval("t", 0.25, 0.4)]
    as_tuples = [(s.unit, s.start, s.end) for s in hyp], [(s.phone, s.start, s.end) for s in ref]
    assert boundary_f1(ref, hyp, 0.02) == boundary_f1(as_tuples[1], as_tuples[0], 0.02)
    assert frame_accuracy(ref, hyp) == frame_accuracy(as_tuples[1], as_tuples[0]) < 1.0


def test_batches_pool_counts():
    hyp1 = [("k", 0.0, 0.12), ("ae", 0.12, 0.26), ("t", 0.26, 0.40)]  # 3 of 4 within 10 ms
    ref2 = [("a", 0.0, 0.5), ("b", 0.5, 1.0)]  # 3 boundaries, all exact
    acc = boundary_accuracy([REF, ref2], [hyp1, ref2], (0.01,))
    assert acc == {0.01: pytest.approx(6 / 7)}
    assert phone_error_rate([["a", "b"], ["c"]], [["a"], ["d", "c"]]) == pytest.approx(2 / 3)
    assert frame_accuracy([REF, REF], [hyp1, REF]) == pytest.approx((37 + 40) / 80)


def test_per_arrays_with_lengths():
    ref = torch.tensor([[1, 2, 3], [4, 5, 0]])
    hyp = np.array([[1, 3, 0, 0], [4, 5, 6, 0]])
    per = phone_error_rate(ref, hyp, ref_lengths=[3, 2], hyp_lengths=[2, 3])
    assert per == pytest.approx(2 / 5)
    assert phone_error_rate(torch.tensor([1, 2, 3]), [1, 2]) == pytest.approx(1 / 3)


def test_align_sequences_ops():
    a = align_sequences("abc", "xbcd")
    assert [op for op, _, _ in a.ops] == ["sub", "hit", "hit", "ins"]
    assert a.distance == 2 == a.substitutions + a.deletions + a.insertions


def test_doctests():
    for module in (alignment_module, sequence_module):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0 and result.attempted > 0


# ---------------------------------------------------------------------------------------------
# Properties


@settings(max_examples=60)
@given(segmentations(), segmentations(), st.booleans(), st.integers(0, 40))
def test_scores_in_unit_interval_and_monotone(ref, hyp, label_aware, tol_ms):
    tols = (0.0, 0.005, tol_ms / 1000, 0.05)
    acc = boundary_accuracy(ref, hyp, tols, label_aware=label_aware)
    values = [acc[t] for t in sorted(acc)]
    assert all(0 <= v <= 1 for v in values)
    assert values == sorted(values)
    p, r, f = boundary_f1(ref, hyp, tol_ms / 1000, label_aware=label_aware)
    assert 0 <= p <= 1 and 0 <= r <= 1 and 0 <= f <= 1
    assert r == acc[tol_ms / 1000]
    assert min(p, r) - 1e-12 <= f <= max(p, r) + 1e-12
    assert 0 <= duration_accuracy(ref, hyp) <= 1
    assert 0 <= phone_error_rate(ref, hyp)
    if ref[-1][2] > 0.005:  # at least one 10 ms frame centre
        assert 0 <= frame_accuracy(ref, hyp) <= 1


@settings(max_examples=60)
@given(segmentations(), segmentations(), st.integers(0, 40))
@example(  # zero-length segments and shared times: the old two-pass claim rule was asymmetric here
    ref=[("a", 0.001, 0.001), ("a", 0.002, 0.002), ("a", 0.02, 0.02), ("a", 0.02, 0.02)],
    hyp=[("a", 0.001, 0.001), ("a", 0.011, 0.011), ("a", 0.011, 0.011), ("a", 0.029, 0.029)],
    tol_ms=9,
)
def test_swap_swaps_precision_and_recall(ref, hyp, tol_ms):
    tol = tol_ms / 1000
    p, r, f = boundary_f1(ref, hyp, tol, label_aware=False)
    p2, r2, f2 = boundary_f1(hyp, ref, tol, label_aware=False)
    assert (p, r) == (r2, p2) and f == pytest.approx(f2)
    # same label strings: the label-aware pairing is boundary k to boundary k, also symmetric
    relabelled = [(lab, s, e) for (lab, _, _), (_, s, e) in zip(ref, hyp)]
    same = [(lab, s, e) for (lab, _, _), (_, s, e) in zip(ref, ref)][: len(relabelled)]
    p, r, f = boundary_f1(same, relabelled, tol)
    p2, r2, f2 = boundary_f1(relabelled, same, tol)
    assert (p, r) == (r2, p2)


@settings(max_examples=80)
@given(
    st.lists(st.integers(0, 60), min_size=0, max_size=5),
    st.lists(st.integers(0, 60), min_size=0, max_size=5),
    st.integers(0, 20),
)
def test_greedy_equals_brute_force_maximum_matching(r_ms, h_ms, tol_ms):
    rt = np.array(sorted(r_ms)) / 1000
    ht = np.array(sorted(h_ms)) / 1000
    got_r, got_h = _greedy(rt, ht, tol_ms / 1000)
    assert len(got_r) == _max_matching(tuple(rt), tuple(ht), tol_ms / 1000)
    assert np.all(np.abs(got_r - got_h) <= tol_ms / 1000 + 1e-9)


@settings(max_examples=60)
@given(segmentations(), st.integers(1, 30), st.booleans())
def test_shift_by_delta(ref, delta_ms, label_aware):
    delta = delta_ms / 1000
    hyp = [(lab, s + delta, e + delta) for lab, s, e in ref]
    if label_aware:
        assert boundary_mae(ref, hyp) == pytest.approx(delta, abs=1e-9)
    assert boundary_mae(ref, hyp, tolerance=delta, label_aware=label_aware) == pytest.approx(delta, abs=1e-9)
    below = delta - 0.0005
    acc = boundary_accuracy(ref, hyp, (delta, below), label_aware=label_aware)
    assert acc[delta] == 1.0
    if label_aware:  # by time alone, shifted boundaries may meet other boundaries
        assert acc[below] == 0.0
    assert duration_accuracy(ref, hyp, rel_tol=0.0, abs_tol=0.0) == 1.0


@settings(max_examples=80)
@given(st.lists(st.sampled_from(LABELS), max_size=6), st.lists(st.sampled_from(LABELS), max_size=6))
def test_edit_distance_matches_reference(a, b):
    assert edit_distance(a, b) == _lev(tuple(a), tuple(b))
    al = align_sequences(a, b)
    assert al.distance == al.substitutions + al.deletions + al.insertions
    assert al.hits + al.substitutions + al.deletions == len(a)
    assert al.hits + al.substitutions + al.insertions == len(b)
    for op, i, j in al.ops:
        if op == "hit":
            assert a[i] == b[j]
    if a:
        assert phone_error_rate(a, b) == _lev(tuple(a), tuple(b)) / len(a)


@settings(max_examples=40)
@given(st.integers(1, 3), st.integers(1, 6), st.data())
def test_frame_arrays_numpy_equals_torch(batch, t, data):
    r = np.array(data.draw(st.lists(st.integers(0, 2), min_size=batch * t, max_size=batch * t))).reshape(batch, t)
    h = np.array(data.draw(st.lists(st.integers(0, 2), min_size=batch * t, max_size=batch * t))).reshape(batch, t)
    lengths = data.draw(st.lists(st.integers(1, t), min_size=batch, max_size=batch))
    want = sum(int((r[b, :n] == h[b, :n]).sum()) for b, n in enumerate(lengths)) / sum(lengths)
    assert frame_accuracy(r, h, lengths=lengths) == pytest.approx(want)
    assert frame_accuracy(torch.from_numpy(r), torch.from_numpy(h), lengths=torch.tensor(lengths)) == pytest.approx(want)
    assert frame_accuracy(r[0, : lengths[0]], torch.from_numpy(h[0, : lengths[0]])) == pytest.approx(
        float((r[0, : lengths[0]] == h[0, : lengths[0]]).mean())
    )


@settings(max_examples=30)
@given(st.lists(st.tuples(segmentations(), segmentations()), min_size=1, max_size=3))
def test_batch_pools_items(pairs):
    refs, hyps = [p[0] for p in pairs], [p[1] for p in pairs]
    n_ref = [len(_boundaries(_parse(r, "ref", None))[0]) for r in refs]
    items = [boundary_accuracy(r, h, (0.01,))[0.01] for r, h in pairs]
    pooled = sum(a * n for a, n in zip(items, n_ref)) / sum(n_ref)
    assert boundary_accuracy(refs, hyps, (0.01,))[0.01] == pytest.approx(pooled)
    per = sum(_lev(tuple(x[0] for x in r), tuple(x[0] for x in h)) for r, h in pairs) / sum(len(r) for r in refs)
    assert phone_error_rate(refs, hyps) == pytest.approx(per)


def test_brute_force_sanity():
    # the brute force itself on a case worked by hand: 0 and 0.01 both near 0.005 -> one pair
    assert _max_matching((0.005,), (0.0, 0.01), 0.005) == 1
    assert _max_matching((0.0, 0.01), (0.005, 0.015), 0.005) == 2


# ---------------------------------------------------------------------------------------------
# Errors (one per message)


def test_error_not_a_list():
    with pytest.raises(HMMTypeError, match="ref must be a list of"):
        boundary_f1("abc", REF)


def test_error_batch_mismatch():
    with pytest.raises(HMMValueError, match="ref and hyp must both be single utterances or batches of equal size"):
        boundary_f1([REF, REF], [REF])


def test_error_empty():
    with pytest.raises(HMMValueError, match="hyp must hold at least one segment"):
        boundary_f1(REF, [])


def test_error_not_a_segment():
    with pytest.raises(HMMValueError, match=r"ref\[1\] must be a \(label, start_s, end_s\) segment"):
        boundary_f1([("a", 0, 1), ("b", 1)], REF)


def test_error_bad_time():
    with pytest.raises(HMMValueError, match=r"hyp\[0\] start must be finite and >= 0; got nan"):
        boundary_f1(REF, [("a", float("nan"), 1.0)])


def test_error_end_before_start():
    with pytest.raises(HMMValueError, match=r"ref\[0\] ends before it starts: start 0.5 > end 0.2"):
        boundary_f1([("a", 0.5, 0.2)], REF)


def test_error_overlap_names_utterance():
    with pytest.raises(HMMValueError, match=r"ref\[1\]\[1\] starts at 0.05, before ref\[1\]\[0\] ends at 0.1"):
        boundary_f1([REF, [("a", 0.0, 0.1), ("b", 0.05, 0.2)]], [REF, REF])


def test_error_unhashable_label():
    with pytest.raises(HMMValueError, match=r"ref\[0\] label must be hashable"):
        boundary_f1([({"a"}, 0.0, 0.1)], REF)


def test_error_fold():
    with pytest.raises(HMMValueError, match="fold must be None or a callable"):
        boundary_f1(REF, REF, fold="stress")


def test_error_tolerance():
    with pytest.raises(HMMValueError, match="tolerance must be a finite number of seconds >= 0; got -0.1"):
        boundary_f1(REF, REF, -0.1)


def test_error_mae_needs_tolerance():
    with pytest.raises(HMMValueError, match="boundary_mae with label_aware=False needs a tolerance"):
        boundary_mae(REF, REF, label_aware=False)


def test_error_frame_shapes():
    with pytest.raises(HMMDimensionError, match=r"hyp must have the shape of ref \(2, 3\); got \(2, 4\)"):
        frame_accuracy(np.zeros((2, 3), int), np.zeros((2, 4), int))


def test_error_frame_ndim():
    with pytest.raises(HMMDimensionError, match=r"ref must be \(T,\) or \(B, T\) frame label ids"):
        frame_accuracy(np.zeros((1, 2, 3), int), np.zeros((1, 2, 3), int))


def test_error_frame_dtype():
    with pytest.raises(HMMDtypeError, match="ref must hold integer frame label ids; got torch.float32"):
        frame_accuracy(torch.zeros(3), torch.zeros(3, dtype=torch.long))


def test_error_frame_mixed_types():
    with pytest.raises(HMMTypeError, match="hyp must be a torch.Tensor or numpy array of frame label ids"):
        frame_accuracy(torch.zeros(3, dtype=torch.long), REF)


def test_error_frame_lengths():
    with pytest.raises(HMMValueError, match=r"lengths must be in \[0, 3\]; got values in \[1, 4\]"):
        frame_accuracy(np.zeros((2, 3), int), np.zeros((2, 3), int), lengths=[1, 4])


def test_error_frame_lengths_for_segments():
    with pytest.raises(HMMValueError, match="lengths is only for frame-label arrays"):
        frame_accuracy(REF, REF, lengths=[3])


def test_error_frame_fold_on_arrays():
    with pytest.raises(HMMValueError, match="fold applies to segment labels"):
        frame_accuracy(np.zeros(3, int), np.zeros(3, int), fold=strip_stress)


def test_error_frame_shift():
    with pytest.raises(HMMValueError, match="frame_shift must be > 0 seconds; got 0"):
        frame_accuracy(REF, REF, frame_shift=0)


def test_error_frame_no_frames():
    with pytest.raises(HMMValueError, match="ref spans no frame centre"):
        frame_accuracy([("a", 0.0, 0.004)], [("a", 0.0, 0.004)])


def test_error_frame_all_lengths_zero():
    with pytest.raises(HMMValueError, match="lengths are all 0"):
        frame_accuracy(np.zeros((1, 3), int), np.zeros((1, 3), int), lengths=[0])


def test_error_per_empty_ref():
    with pytest.raises(HMMValueError, match="ref must hold at least one label"):
        phone_error_rate([], ["a"])


def test_error_per_batch_sizes():
    with pytest.raises(HMMValueError, match="ref and hyp must hold the same number of utterances; got 2 and 1"):
        phone_error_rate([["a"], ["b"]], [["a"]])


def test_error_per_array_dtype():
    with pytest.raises(HMMDtypeError, match="ref must hold integer label ids; got torch.float64"):
        phone_error_rate(np.zeros(3), [1])


def test_error_per_array_ndim():
    with pytest.raises(HMMDimensionError, match=r"hyp must be \(L,\) or \(B, L\) label ids"):
        phone_error_rate([1], np.zeros((1, 1, 1), int))


def test_error_per_lengths_for_lists():
    with pytest.raises(HMMValueError, match="ref_lengths is only for"):
        phone_error_rate([1], [1], ref_lengths=[1])


def test_error_per_not_a_list():
    with pytest.raises(HMMTypeError, match="ref must be a list of labels or segments"):
        phone_error_rate(5, [1])


def test_phone_error_rate_reads_a_list_of_integer_lists_as_a_batch():
    """Review finding: [[1, 2, 3], ...] looked like one segmentation of 3-item segments."""
    assert phone_error_rate([[1, 2, 3], [4, 5, 6]], [[1, 2, 3], [4, 5, 7]]) == pytest.approx(1 / 6)
    assert phone_error_rate([[1, 2, 3]], [[1, 3]]) == pytest.approx(1 / 3)
    segs = [("a", 0.0, 0.1), ("b", 0.1, 0.2)]
    assert phone_error_rate(segs, [("a", 0.0, 0.2)]) == pytest.approx(0.5)
    assert phone_error_rate([segs, segs], [segs, [("b", 0.0, 0.2)]]) == pytest.approx(0.25)


def test_boundary_errors_label_each_reference_boundary_and_its_pair():
    """By hand: ref k|ae|gap|t, hyp k|t (ae deleted). Reference boundaries 0, .1, .25 (offset
    before the gap), .3, .4; the hits are k and t, so k's onset/offset and t's onset/offset pair;
    ae's onset .1 is k's offset (paired with hyp .12), ae's offset .25 has no pair."""
    from pytorch_hmm.metrics import BoundaryError, boundary_errors

    ref = [("k", 0.0, 0.10), ("ae", 0.10, 0.25), ("t", 0.30, 0.40)]
    hyp = [("k", 0.0, 0.12), ("t", 0.33, 0.40)]
    (got,) = boundary_errors(ref, hyp)
    assert [e.label for e in got] == ["k", "ae", None, "t", None]
    assert [e.time for e in got] == [0.0, 0.10, 0.25, 0.30, 0.40]
    errors = [None if e.error is None else round(e.error, 9) for e in got]
    assert errors == [0.0, 0.02, None, 0.03, 0.0]
    assert isinstance(got[0], BoundaryError)
    # the pairs are the ones boundary_mae averages
    paired = [abs(e.error) for e in got if e.error is not None]
    assert boundary_mae(ref, hyp) == pytest.approx(sum(paired) / len(paired))
    # a batch gives one list per utterance; fold maps the labels
    batch = boundary_errors([ref, ref], [hyp, ref], fold=str.upper)
    assert len(batch) == 2 and [e.label for e in batch[1]] == ["K", "AE", None, "T", None]
    assert all(e.error == 0.0 for e in batch[1])
