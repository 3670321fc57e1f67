"""CTC as ``torch.nn.functional.ctc_loss`` accepts it: unbatched input and zero-length items.

The reference is ``F.ctc_loss`` itself (time-first, so batched log-probs are transposed):
values for every reduction and ``zero_infinity``, gradients w.r.t. the logits before
``log_softmax`` (where both are the true derivative), and gradients w.r.t. the normalised
log-probs through the documented relation ``torch = ours + exp(log_probs)`` on each item's
frames. The forced alignment of an unbatched sequence or a batch with 0-frame items is checked
against the batched alignment item by item (itself tested against brute force in
``tests/test_alignment_ctc.py``) and, for empty targets, against the single blank path.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from pytorch_hmm.alignment import CTCAligner, ctc_forced_align, ctc_loss
from pytorch_hmm.errors import HMMDimensionError, HMMDtypeError, HMMValueError, InfeasibleAlignmentError

REDUCTIONS = ("none", "sum", "mean")


def _weights(reduction: str, target_lengths: torch.Tensor) -> torch.Tensor:
    """``(B,)`` d(reduced loss) / d(loss_b): how much each item's loss counts."""
    b = target_lengths.shape[0]
    if reduction == "mean":
        return 1.0 / (b * target_lengths.clamp(min=1).double())
    return torch.ones(b, dtype=torch.float64)


def _compare(logits, targets, il, tl, blank, reduction, zero_infinity, unbatched=False):
    """Our loss and both gradients against F.ctc_loss; ``logits`` are (B, T, C) or unbatched (T, C)."""
    def ref_input(x):
        return x.log_softmax(-1) if unbatched else x.log_softmax(-1).transpose(0, 1)

    x = logits.clone().requires_grad_(True)
    y = logits.clone().requires_grad_(True)
    ours = ctc_loss(x.log_softmax(-1), targets, il, tl, blank, reduction, zero_infinity)
    ref = F.ctc_loss(ref_input(y), targets, torch.as_tensor(il), torch.as_tensor(tl), blank, reduction, zero_infinity)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)

    per_item = F.ctc_loss(ref_input(logits), targets, torch.as_tensor(il), torch.as_tensor(tl), blank, "none").reshape(-1)
    feasible = torch.isfinite(per_item)
    if not zero_infinity and not feasible.all() and reduction != "none":
        return ours  # the reduced loss is inf; F.ctc_loss's gradients are NaN
    # w.r.t. the logits: the same derivative
    (g_ours,) = torch.autograd.grad(ours.sum(), x)
    (g_ref,) = torch.autograd.grad(ref.sum(), y)
    assert torch.isfinite(g_ours).all()
    keep = (feasible if unbatched else feasible[:, None, None]).expand_as(g_ours)
    torch.testing.assert_close(g_ours[keep], g_ref[keep], rtol=1e-9, atol=1e-10)
    assert not g_ours[~keep].any()

    # w.r.t. the normalised log-probs: F.ctc_loss adds exp(log_probs) on each finite item's frames
    lp = logits.log_softmax(-1)
    a = lp.clone().requires_grad_(True)
    c = lp.clone().requires_grad_(True)
    mine = ctc_loss(a, targets, il, tl, blank, reduction, zero_infinity)
    theirs = F.ctc_loss(c if unbatched else c.transpose(0, 1), targets, torch.as_tensor(il), torch.as_tensor(tl),
                        blank, reduction, zero_infinity)
    (ga,) = torch.autograd.grad(mine.sum(), a)
    (gc,) = torch.autograd.grad(theirs.sum(), c)
    lp3 = lp if not unbatched else lp.unsqueeze(0)
    ga3, gc3 = (ga, gc) if not unbatched else (ga.unsqueeze(0), gc.unsqueeze(0))
    il_b = torch.as_tensor(il).reshape(-1)
    tl_b = torch.as_tensor(tl).reshape(-1)
    frames = torch.arange(lp3.shape[1])[None, :] < il_b[:, None]
    w = _weights(reduction, tl_b) * feasible
    expected = ga3 + lp3.exp() * (w[:, None] * frames)[:, :, None]
    ok = feasible[:, None, None].expand_as(gc3)
    torch.testing.assert_close(gc3[ok], expected[ok], rtol=1e-9, atol=1e-10)
    assert not ga3[~ok].any()
    return ours


# ---------------------------------------------------------------------------------------
# unbatched (T, C) input
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("zero_infinity", [False, True])
@pytest.mark.parametrize("form", ["int", "0-d", "(1,)", "list", "tuple", "numpy"])
@pytest.mark.parametrize("case", [(7, [1, 2, 2]), (7, []), (0, []), (0, [3]), (2, [1, 1])])
def test_unbatched_equals_torch(reduction, zero_infinity, form, case):
    """(T, C) log-probs with (S,) targets and every spelling of a single length; 0-d result for "none"."""
    n, target = case
    logits = torch.randn(7, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(n + len(target))) * 2
    targets = torch.tensor(target, dtype=torch.long)
    s = len(target)
    spell = {"int": lambda v: v, "0-d": torch.tensor, "(1,)": lambda v: torch.tensor([v]), "list": lambda v: [v],
             "tuple": lambda v: (v,), "numpy": np.int64}[form]
    ours = _compare(logits, targets, spell(n), spell(s), 0, reduction, zero_infinity, unbatched=True)
    assert ours.ndim == 0
    if n == 0:
        expected = 0.0 if s == 0 or zero_infinity else math.inf
        assert float(ours.detach()) == expected
    elif s == 0 and reduction == "none":  # the one path: blank throughout
        torch.testing.assert_close(ours, -logits.log_softmax(-1)[:, 0].sum(), rtol=1e-12, atol=1e-12)


def test_unbatched_defaults_and_padded_target_row():
    """No lengths (all T frames, all S tokens), a (1, S) target row, a target longer than its length."""
    lp = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(4)).log_softmax(-1)
    ref = F.ctc_loss(lp, torch.tensor([1, 4]), torch.tensor(6), torch.tensor(2), reduction="none")
    torch.testing.assert_close(ctc_loss(lp, torch.tensor([1, 4]), reduction="none"), ref, rtol=1e-12, atol=0)
    torch.testing.assert_close(ctc_loss(lp, torch.tensor([[1, 4]]), reduction="none"), ref, rtol=1e-12, atol=0)
    torch.testing.assert_close(ctc_loss(lp, torch.tensor([1, 4, 3]), 6, 2, reduction="none"), ref, rtol=1e-12, atol=0)
    torch.testing.assert_close(CTCAligner(reduction="none")(lp, torch.tensor([1, 4])), ref, rtol=1e-12, atol=0)
    # unbatched == a batch of one
    torch.testing.assert_close(ctc_loss(lp[None], torch.tensor([[1, 4]]), reduction="none")[0], ref, rtol=1e-12, atol=0)


def test_unbatched_forced_align_equals_the_batch_of_one():
    lp = torch.randn(8, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2)).log_softmax(-1)
    labels, scores = ctc_forced_align(lp, torch.tensor([2, 2, 3]), torch.tensor(7), 3)
    b_labels, b_scores = ctc_forced_align(lp[None], torch.tensor([[2, 2, 3]]), [7], [3])
    assert labels.shape == scores.shape == (8,)
    assert torch.equal(labels, b_labels[0]) and torch.equal(scores, b_scores[0])
    assert labels[7] == -1 and scores[7] == 0
    # an empty target: blank at every frame, scores the blank log-probs
    labels, scores = ctc_forced_align(lp, torch.zeros(0, dtype=torch.long), 5, 0, blank=1)
    assert labels.tolist() == [1] * 5 + [-1] * 3
    torch.testing.assert_close(scores[:5], lp[:5, 1], rtol=0, atol=0)
    # 0 frames and 0 tokens: nothing to label
    labels, scores = ctc_forced_align(lp, torch.zeros(0, dtype=torch.long), 0, 0)
    assert labels.tolist() == [-1] * 8 and not scores.any()


# ---------------------------------------------------------------------------------------
# zero-length items in a batch
# ---------------------------------------------------------------------------------------


@st.composite
def batches_with_empty_items(draw):
    """Logits (B, T, C), padded targets and lengths where many items have 0 frames or 0 tokens."""
    b = draw(st.integers(1, 5))
    t = draw(st.integers(1, 8))
    c = draw(st.integers(2, 5))
    blank = draw(st.integers(0, c - 1))
    labels = [k for k in range(c) if k != blank]
    targets = [draw(st.lists(st.sampled_from(labels), max_size=4)) for _ in range(b)]
    lengths = [draw(st.sampled_from([0, 0, 1, t, draw(st.integers(0, t))])) for _ in range(b)]
    seed = draw(st.integers(0, 2**32 - 1))
    logits = torch.randn(b, t, c, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) * 2
    s_max = max(len(x) for x in targets)
    padded = torch.full((b, s_max), blank, dtype=torch.long)
    for i, x in enumerate(targets):
        padded[i, : len(x)] = torch.tensor(x, dtype=torch.long)
    return logits, padded, torch.tensor(lengths), torch.tensor([len(x) for x in targets]), blank


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("zero_infinity", [False, True])
@settings(max_examples=30, deadline=None)
@given(batch=batches_with_empty_items())
def test_batches_with_empty_items_equal_torch(reduction, zero_infinity, batch):
    logits, targets, il, tl, blank = batch
    _compare(logits, targets, il, tl, blank, reduction, zero_infinity)


@pytest.mark.parametrize("zero_infinity", [False, True])
def test_empty_items_by_hand_and_concatenated_targets(zero_infinity):
    """Target length 0: -sum of blank log-probs; 0 frames: 0 or inf (0 with zero_infinity)."""
    lp = torch.randn(4, 6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(9)).log_softmax(-1)
    il, tl = torch.tensor([6, 0, 0, 3]), torch.tensor([0, 0, 2, 1])
    concatenated = torch.tensor([1, 2, 2])
    loss = ctc_loss(lp, concatenated, il, tl, blank=0, reduction="none", zero_infinity=zero_infinity)
    ref = F.ctc_loss(lp.transpose(0, 1), concatenated, il, tl, 0, "none", zero_infinity)
    torch.testing.assert_close(loss, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(loss[0], -lp[0, :, 0].sum(), rtol=1e-12, atol=0)
    assert loss[1] == 0 and loss[2] == (0 if zero_infinity else math.inf)


def test_batch_equals_items_with_empty_items():
    g = torch.Generator().manual_seed(5)
    lp = torch.randn(5, 7, 4, dtype=torch.float64, generator=g).log_softmax(-1)
    targets = torch.tensor([[1, 2, 2], [3, 0, 0], [0, 0, 0], [2, 1, 0], [0, 0, 0]])
    il, tl = torch.tensor([7, 0, 0, 4, 5]), torch.tensor([3, 1, 0, 2, 0])
    loss = ctc_loss(lp, targets, il, tl, reduction="none")
    for b in range(5):
        one = ctc_loss(lp[b], targets[b, : tl[b]], il[b], tl[b], reduction="none")
        torch.testing.assert_close(one, loss[b], rtol=1e-12, atol=0)
    assert loss[1] == math.inf and loss[2] == 0
    aligned = [0, 2, 3, 4]  # item 1 (0 frames, 1 token) cannot be aligned
    labels, scores = ctc_forced_align(lp[aligned], targets[aligned], il[aligned], tl[aligned])
    for row, b in enumerate(aligned):
        item_labels, item_scores = ctc_forced_align(lp[b], targets[b, : tl[b]], il[b], tl[b])
        assert torch.equal(item_labels, labels[row]) and torch.equal(item_scores, scores[row])
    assert labels[1].tolist() == [-1] * 7 and not scores[1].any()


def test_garbage_in_frames_of_empty_items_changes_nothing():
    lp = torch.randn(3, 5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(6)).log_softmax(-1)
    targets, il, tl = torch.tensor([[1, 2], [3, 3], [0, 0]]), torch.tensor([5, 0, 0]), torch.tensor([2, 2, 0])
    dirty = lp.clone()
    dirty[1:] = float("nan")
    for zero_infinity in (False, True):
        x = dirty.clone().requires_grad_(True)
        loss = ctc_loss(x, targets, il, tl, reduction="none", zero_infinity=zero_infinity)
        clean = ctc_loss(lp, targets, il, tl, reduction="none", zero_infinity=zero_infinity)
        torch.testing.assert_close(loss, clean, rtol=0, atol=0)
        (grad,) = torch.autograd.grad(loss.sum(), x)
        assert torch.isfinite(grad).all() and not grad[1:].any()
    labels, scores = ctc_forced_align(dirty[[0, 2]], targets[[0, 2]], il[[0, 2]], tl[[0, 2]])
    clean_labels, clean_scores = ctc_forced_align(lp[[0, 2]], targets[[0, 2]], il[[0, 2]], tl[[0, 2]])
    assert torch.equal(labels, clean_labels) and torch.equal(scores, clean_scores)
    spans = CTCAligner().align(dirty[[0, 2]], targets[[0, 2]], il[[0, 2]], tl[[0, 2]]).spans
    assert [s.token for s in spans[0]] == [1, 2] and spans[1] == []


@pytest.mark.parametrize("shape", [(5, 0, 4), (0, 2, 4)])
def test_empty_batch_or_no_frames_are_rejected_as_by_torch(shape):
    """F.ctc_loss rejects an empty log_probs tensor (B = 0 or T = 0, every reduction): so do we."""
    t, b, c = shape  # F.ctc_loss's (T, B, C)
    targets = torch.zeros(b, 1, dtype=torch.long) + 1
    lengths = torch.zeros(b, dtype=torch.long)
    for reduction in REDUCTIONS:
        with pytest.raises(RuntimeError, match="must not be empty"):
            F.ctc_loss(torch.zeros(t, b, c, dtype=torch.float64), targets, lengths, lengths, 0, reduction)
        with pytest.raises(HMMDimensionError, match=r"at least one sequence, frame and class"):
            ctc_loss(torch.zeros(b, t, c, dtype=torch.float64), targets, lengths, lengths, reduction=reduction)


# ---------------------------------------------------------------------------------------
# errors: one test per new message
# ---------------------------------------------------------------------------------------


def test_error_log_probs_neither_batched_nor_unbatched():
    with pytest.raises(HMMDimensionError, match=r"log_probs must be batch-first \(B, T, C\) or unbatched \(T, C\); got shape \(4,\)"):
        ctc_loss(torch.zeros(4), torch.tensor([1]))
    with pytest.raises(HMMDimensionError, match=r"or unbatched \(T, C\); got shape \(1, 2, 3, 4\)"):
        ctc_forced_align(torch.zeros(1, 2, 3, 4), torch.tensor([1]))


def test_error_unbatched_log_probs_empty():
    with pytest.raises(HMMDimensionError, match=r"log_probs must have at least one frame and class; got unbatched shape \(0, 4\)"):
        ctc_loss(torch.zeros(0, 4), torch.tensor([1]), 0, 1)


def test_error_unbatched_targets_shape():
    lp = torch.randn(6, 4).log_softmax(-1)
    with pytest.raises(HMMDimensionError, match=r"targets must be \(S,\) \(or \(1, S\)\) with unbatched log_probs \(T, C\); got shape \(2, 3\)"):
        ctc_loss(lp, torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(HMMDimensionError, match=r"targets must be \(S,\) .*got shape \(\)"):
        ctc_forced_align(lp, torch.tensor(1))


@pytest.mark.parametrize("name", ["input_lengths", "target_lengths"])
def test_error_unbatched_lengths(name):
    lp, tg = torch.randn(6, 4).log_softmax(-1), torch.tensor([1, 2])
    for bad, got in [(torch.tensor([6, 6]), r"got shape \(2,\)"), (torch.tensor([[2]]), r"got shape \(1, 1\)"),
                     ([2, 2], "got 2 values"), ((), "got 0 values")]:
        kwargs = {name: bad}
        with pytest.raises(HMMDimensionError, match=rf"{name} must be a scalar, a 0-d tensor or \(1,\) with unbatched log_probs \(T, C\); {got}"):
            ctc_loss(lp, tg, **kwargs)
    # the batched checks still apply to the single length
    with pytest.raises(HMMDtypeError, match=rf"{name} must have an integer dtype; got torch.float32"):
        ctc_loss(lp, tg, **{name: torch.tensor(2.0)})
    with pytest.raises(HMMValueError, match=rf"{name} must be "):
        ctc_loss(lp, tg, **{name: 9})
    with pytest.raises(HMMValueError, match=rf"{name} must be "):
        ctc_loss(lp, tg, **{name: -1})


def test_error_zero_frames_with_tokens_cannot_be_aligned():
    lp = torch.randn(2, 5, 4).log_softmax(-1)
    with pytest.raises(InfeasibleAlignmentError, match=r"batch item 1: .* S \+ repeats = 2 \+ 0 = 2 frames .*got T = 0 frames"):
        ctc_forced_align(lp, torch.tensor([[1, 2], [3, 1]]), [5, 0], [2, 2])
    with pytest.raises(InfeasibleAlignmentError, match=r"batch item 0: .*got T = 0 frames"):
        ctc_forced_align(lp[0], torch.tensor([3]), 0, 1)
