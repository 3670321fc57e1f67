"""CTC loss, forced alignment, token spans and greedy decoding (pytorch_hmm.alignment.ctc).

References, none of which shares code with the implementation:

* a brute-force enumeration of every label sequence of length T over C classes that
  collapses to the target (tiny problems), for the loss, its gradient, and the best path;
* ``torch.nn.functional.ctc_loss`` for the loss and its gradient w.r.t. the logits;
* hand-made examples for ``merge_tokens`` and greedy decoding.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from pytorch_hmm.alignment import (
    CTCAligner,
    CTCAlignment,
    TokenSpan,
    ctc_forced_align,
    ctc_greedy_decode,
    ctc_loss,
    merge_tokens,
)
from pytorch_hmm.errors import HMMDimensionError, HMMDtypeError, HMMValueError, InfeasibleAlignmentError

BACKENDS = ("torch", "numba")


# ---------------------------------------------------------------------------------------
# brute-force oracle (numpy + itertools only)
# ---------------------------------------------------------------------------------------


def collapse(path, blank):
    """CTC's many-to-one map: merge runs of equal labels, then drop blanks."""
    return [k for k, _ in itertools.groupby(path) if k != blank]


def brute_force(lp: np.ndarray, target, blank):
    """``(log Z, class posteriors (T, C), best score, best paths)`` over all CTC alignments of one item."""
    t_len, c = lp.shape
    paths = [p for p in itertools.product(range(c), repeat=t_len) if collapse(p, blank) == list(target)]
    post = np.zeros((t_len, c))
    if not paths:
        return -math.inf, post, -math.inf, []
    scores = np.array([lp[np.arange(t_len), list(p)].sum() for p in paths])
    finite = scores[np.isfinite(scores)]
    if finite.size == 0:
        return -math.inf, post, -math.inf, []
    top = finite.max()
    log_z = top + math.log(np.exp(finite - top).sum())
    for p, s in zip(paths, scores):
        post[np.arange(t_len), list(p)] += math.exp(s - log_z)
    best = [tuple(p) for p, s in zip(paths, scores) if s >= top - 1e-9]
    return log_z, post, top, best


def test_oracle_by_hand():
    # T = 2, C = 2, blank 0, target [1]: alignments (1,1), (0,1), (1,0)
    lp = np.log(np.array([[0.3, 0.7], [0.6, 0.4]]))
    log_z, post, best, paths = brute_force(lp, [1], 0)
    probs = {(1, 1): 0.7 * 0.4, (0, 1): 0.3 * 0.4, (1, 0): 0.7 * 0.6}
    assert log_z == pytest.approx(math.log(sum(probs.values())))
    assert best == pytest.approx(math.log(0.42)) and paths == [(1, 0)]
    assert post[0, 1] == pytest.approx((probs[1, 1] + probs[1, 0]) / sum(probs.values()))
    assert collapse((1, 1, 0, 1, 2, 2), 0) == [1, 1, 2]


# ---------------------------------------------------------------------------------------
# random problems
# ---------------------------------------------------------------------------------------


@st.composite
def problems(draw, max_b=3, max_t=5, max_c=3, max_s=3, allow_inf=True):
    """``(log_probs (B, T, C) float64 numpy, targets list of lists, input_lengths, blank)``."""
    b = draw(st.integers(1, max_b))
    t = draw(st.integers(1, max_t))
    c = draw(st.integers(2, max_c))
    blank = draw(st.integers(0, c - 1))
    labels = [k for k in range(c) if k != blank]
    targets = [draw(st.lists(st.sampled_from(labels), max_size=max_s)) for _ in range(b)]
    lengths = draw(st.lists(st.integers(1, t), min_size=b, max_size=b))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lp = rng.normal(size=(b, t, c)) * 2  # unnormalised on purpose: the loss is defined anyway
    if allow_inf and draw(st.booleans()):
        lp[rng.random(lp.shape) < 0.2] = -np.inf
    return lp, targets, lengths, blank


def padded(targets, fill=0):
    s = max([len(x) for x in targets] + [0])
    out = torch.full((len(targets), s), fill, dtype=torch.long)
    for i, x in enumerate(targets):
        out[i, : len(x)] = torch.tensor(x, dtype=torch.long)
    return out, torch.tensor([len(x) for x in targets])


def concatenated(targets):
    flat = [k for x in targets for k in x]
    return torch.tensor(flat, dtype=torch.long), torch.tensor([len(x) for x in targets])


# ---------------------------------------------------------------------------------------
# brute force
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=40)
@given(prob=problems(), layout=st.sampled_from(["padded", "concatenated"]))
def test_loss_gradient_and_alignment_equal_brute_force(backend, prob, layout):
    lp_np, targets, lengths, blank = prob
    tg, tl = padded(targets, fill=blank) if layout == "padded" else concatenated(targets)
    lp = torch.tensor(lp_np, requires_grad=True)
    loss = ctc_loss(lp, tg, lengths, tl, blank, reduction="none", backend=backend)
    (grad,) = torch.autograd.grad(loss.sum(), lp)
    answers = [brute_force(lp_np[b, : lengths[b]], targets[b], blank) for b in range(len(targets))]
    for b, (log_z, post, _, _) in enumerate(answers):
        assert loss[b].item() == pytest.approx(-log_z, rel=1e-9, abs=1e-9)
        # the true derivative: minus the expected number of frames emitting each class
        expected = -post if math.isfinite(log_z) else np.zeros_like(post)
        np.testing.assert_allclose(grad[b, : lengths[b]].numpy(), expected, atol=1e-9)
        assert not grad[b, lengths[b]:].any()

    feasible = [b for b, a in enumerate(answers) if math.isfinite(a[2])]
    if len(feasible) < len(targets):
        with pytest.raises(InfeasibleAlignmentError, match="batch item"):
            ctc_forced_align(lp.detach(), tg, lengths, tl, blank, backend=backend)
    if not feasible:
        return
    sub_tg, sub_tl = padded([targets[b] for b in feasible], fill=blank)
    labels, scores = ctc_forced_align(lp.detach()[feasible], sub_tg, [lengths[b] for b in feasible], sub_tl, blank, backend=backend)
    for i, b in enumerate(feasible):
        n = lengths[b]
        path = labels[i, :n].tolist()
        assert (labels[i, n:] == -1).all() and (scores[i, n:] == 0).all()
        assert collapse(path, blank) == targets[b]
        assert tuple(path) in answers[b][3]
        np.testing.assert_allclose(scores[i, :n].numpy(), lp_np[b, np.arange(n), path], rtol=1e-12)
        assert scores[i].sum().item() == pytest.approx(answers[b][2], rel=1e-9, abs=1e-9)


# ---------------------------------------------------------------------------------------
# torch.nn.functional.ctc_loss
# ---------------------------------------------------------------------------------------


@st.composite
def ctc_batches(draw):
    """Normalised problems for F.ctc_loss: logits (B, T, C), targets (with repeats), lengths."""
    b = draw(st.integers(1, 4))
    t = draw(st.integers(1, 12))
    c = draw(st.integers(2, 6))
    blank = draw(st.integers(0, c - 1))
    labels = [k for k in range(c) if k != blank]
    targets = []
    for _ in range(b):
        x = draw(st.lists(st.sampled_from(labels), max_size=6))
        if len(x) > 1 and draw(st.booleans()):
            x[1] = x[0]  # force a repeat
        targets.append(x)
    lengths = draw(st.lists(st.integers(1, t), min_size=b, max_size=b))
    seed = draw(st.integers(0, 2**32 - 1))
    logits = torch.randn(b, t, c, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) * 2
    return logits, targets, lengths, blank


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("zero_infinity", [False, True])
@settings(max_examples=25)
@given(batch=ctc_batches(), layout=st.sampled_from(["padded", "concatenated"]))
def test_equals_torch_ctc_loss(reduction, zero_infinity, batch, layout):
    logits, targets, lengths, blank = batch
    lengths = torch.tensor(lengths)
    tg, tl = padded(targets, fill=blank) if layout == "padded" else concatenated(targets)
    x = logits.clone().requires_grad_(True)
    ours = ctc_loss(x.log_softmax(-1), tg, lengths, tl, blank, reduction, zero_infinity)
    y = logits.clone().requires_grad_(True)
    ref = F.ctc_loss(y.log_softmax(-1).transpose(0, 1), tg, lengths, tl, blank, reduction, zero_infinity)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)

    per_item = F.ctc_loss(logits.log_softmax(-1).transpose(0, 1), tg, lengths, tl, blank, "none")
    feasible = torch.isfinite(per_item)
    if not zero_infinity and not feasible.all() and reduction != "none":
        return  # the reduced loss is inf; F.ctc_loss's gradient is NaN everywhere it touches
    (g_ours,) = torch.autograd.grad(ours.sum(), x)
    (g_ref,) = torch.autograd.grad(ref.sum(), y)
    # F.ctc_loss gives NaN gradients for infinite losses; ours gives 0 there
    torch.testing.assert_close(g_ours[feasible], g_ref[feasible], rtol=1e-9, atol=1e-10)
    assert not g_ours[~feasible].any()


def test_torch_gradient_wrt_log_probs_is_not_the_derivative():
    # the claim in ctc_loss's docstring: F.ctc_loss's gradient w.r.t. (normalised) log_probs is
    # exp(log_probs) - posterior, i.e. ours + exp(log_probs)
    torch.manual_seed(0)
    lp = torch.randn(2, 7, 4, dtype=torch.float64).log_softmax(-1).requires_grad_(True)
    tg, tl = torch.tensor([[1, 1, 2], [3, 2, 0]]), torch.tensor([3, 2])
    (ours,) = torch.autograd.grad(ctc_loss(lp, tg, None, tl, reduction="sum"), lp)
    (ref,) = torch.autograd.grad(F.ctc_loss(lp.transpose(0, 1), tg, torch.tensor([7, 7]), tl, reduction="sum"), lp)
    torch.testing.assert_close(ref, ours + lp.detach().exp(), rtol=1e-10, atol=1e-12)
    assert (ours <= 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_long_sequences_match_torch(backend):
    g = torch.Generator().manual_seed(1)
    b, t, c, s = 3, 600, 12, 80
    logits = torch.randn(b, t, c, generator=g)
    tg = torch.randint(1, c, (b, s), generator=g)
    lengths, tl = torch.tensor([600, 450, 300]), torch.tensor([80, 60, 10])
    ours = ctc_loss(logits.log_softmax(-1), tg, lengths, tl, reduction="none", backend=backend)
    ref = F.ctc_loss(logits.double().log_softmax(-1).transpose(0, 1), tg, lengths, tl, reduction="none")
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours.double(), ref, rtol=2e-5, atol=0)


# ---------------------------------------------------------------------------------------
# batch == items, padding
# ---------------------------------------------------------------------------------------


def _garbage_batch():
    g = torch.Generator().manual_seed(3)
    b, t, c = 4, 9, 5
    lp = torch.randn(b, t, c, dtype=torch.float64, generator=g).log_softmax(-1)
    targets = [[1, 2, 2], [4], [], [3, 1, 3, 4]]
    lengths = torch.tensor([9, 4, 2, 7])
    return lp, targets, lengths


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_equals_items(backend):
    lp, targets, lengths = _garbage_batch()
    tg, tl = padded(targets)
    loss = ctc_loss(lp, tg, lengths, tl, reduction="none", backend=backend)
    labels, scores = ctc_forced_align(lp, tg, lengths, tl, backend=backend)
    for b, (x, n) in enumerate(zip(targets, lengths)):
        one = lp[b : b + 1, :n]
        item_tg = torch.tensor([x], dtype=torch.long).reshape(1, len(x))
        torch.testing.assert_close(ctc_loss(one, item_tg, reduction="none", backend=backend), loss[b : b + 1], rtol=1e-12, atol=1e-12)
        item_labels, item_scores = ctc_forced_align(one, item_tg, backend=backend)
        assert torch.equal(item_labels[0], labels[b, :n])
        torch.testing.assert_close(item_scores[0], scores[b, :n])


def test_garbage_in_padding_changes_nothing():
    lp, targets, lengths = _garbage_batch()
    tg, tl = padded(targets)
    clean_loss = ctc_loss(lp, tg, lengths, tl, reduction="none")
    clean_align = ctc_forced_align(lp, tg, lengths, tl)
    dirty = lp.clone()
    for b, n in enumerate(lengths):
        dirty[b, n:] = float("nan") if b % 2 else 1e3
    dirty_tg = tg.clone()
    for b, x in enumerate(targets):
        dirty_tg[b, len(x):] = -7 if b % 2 else 99
    torch.testing.assert_close(ctc_loss(dirty, dirty_tg, lengths, tl, reduction="none"), clean_loss, rtol=0, atol=0)
    labels, scores = ctc_forced_align(dirty, dirty_tg, lengths, tl)
    assert torch.equal(labels, clean_align[0]) and torch.equal(scores, clean_align[1])
    assert ctc_greedy_decode(dirty, lengths) == ctc_greedy_decode(lp, lengths)


# ---------------------------------------------------------------------------------------
# infeasible targets
# ---------------------------------------------------------------------------------------


def test_infeasible_target_raises_with_t_s_and_repeats():
    lp = torch.randn(2, 4, 3).log_softmax(-1)
    tg = torch.tensor([[1, 2, 0], [1, 1, 2]])
    tl = torch.tensor([2, 3])
    with pytest.raises(InfeasibleAlignmentError,
                       match=r"batch item 1: .* S \+ repeats = 3 \+ 1 = 4 frames \(S = 3 tokens, 1 repeated .*got T = 3 frames"):
        ctc_forced_align(lp, tg, [4, 3], tl)
    # the loss is inf there, as in F.ctc_loss, or 0 with zero_infinity
    loss = ctc_loss(lp, tg, [4, 3], tl, reduction="none")
    assert math.isfinite(loss[0]) and loss[1] == math.inf
    assert ctc_loss(lp, tg, [4, 3], tl, reduction="none", zero_infinity=True)[1] == 0


def test_no_finite_alignment_raises():
    lp = torch.randn(1, 5, 3).log_softmax(-1)
    lp[0, :, 2] = -math.inf
    with pytest.raises(InfeasibleAlignmentError, match="no CTC alignment with a finite score for batch item 0"):
        ctc_forced_align(lp, torch.tensor([[1, 2]]))


# ---------------------------------------------------------------------------------------
# merge_tokens, greedy decoding, the module
# ---------------------------------------------------------------------------------------


def test_merge_tokens_by_hand():
    labels = torch.tensor([0, 1, 1, 0, 1, 2, 2, 0, -1, -1])
    probs = torch.tensor([0.9, 0.4, 0.6, 0.8, 0.5, 0.2, 0.3, 0.7, 1.0, 1.0], dtype=torch.float64)
    spans = merge_tokens(labels, probs.log())
    assert spans == [
        TokenSpan(1, 1, 3, pytest.approx(0.5)),
        TokenSpan(1, 4, 5, pytest.approx(0.5)),
        TokenSpan(2, 5, 7, pytest.approx(0.25)),
    ]
    assert [len(s) for s in spans] == [2, 1, 2]
    # blank = 1: the 1s are dropped, 0s become spans
    assert [(s.token, s.start, s.end) for s in merge_tokens(labels, probs.log(), blank=1)] == [
        (0, 0, 1), (0, 3, 4), (2, 5, 7), (0, 7, 8)]


def test_merge_tokens_batched_and_edge_cases():
    labels = torch.tensor([[1, 1, 2, -1], [2, 2, 2, 2], [0, 0, -1, -1]])
    scores = torch.zeros(3, 4)
    out = merge_tokens(labels, scores)
    assert out == [merge_tokens(labels[b], scores[b]) for b in range(3)]
    assert out[0] == [TokenSpan(1, 0, 2, 1.0), TokenSpan(2, 2, 3, 1.0)]
    assert out[1] == [TokenSpan(2, 0, 4, 1.0)] and out[2] == []
    assert merge_tokens(torch.zeros(0, dtype=torch.long), torch.zeros(0)) == []
    assert merge_tokens(torch.zeros(2, 0, dtype=torch.long), torch.zeros(2, 0)) == [[], []]


def _one_hot_log_probs(frames, c, blank_prob=0.0):
    x = torch.full((len(frames), c), -5.0)
    x[torch.arange(len(frames)), torch.tensor(frames)] = 5.0
    return x.log_softmax(-1)


def test_greedy_decode_by_hand():
    a = _one_hot_log_probs([1, 1, 0, 1, 2, 2, 0, 0], 3)
    b = _one_hot_log_probs([0, 2, 2, 1, 1, 1, 2, 2], 3)
    lp = torch.stack([a, b])
    assert ctc_greedy_decode(lp) == [[1, 1, 2], [2, 1, 2]]
    assert ctc_greedy_decode(lp, [3, 5]) == [[1], [2, 1]]
    assert ctc_greedy_decode(lp, blank=2) == [[1, 0, 1, 0], [0, 1]]


def test_aligner_module():
    lp, targets, lengths = _garbage_batch()
    tg, tl = padded(targets)
    aligner = CTCAligner(blank=0, reduction="sum")
    assert isinstance(aligner, torch.nn.Module) and "reduction='sum'" in repr(aligner)
    torch.testing.assert_close(aligner(lp, tg, lengths, tl),
                               F.ctc_loss(lp.transpose(0, 1), tg, lengths, tl, reduction="sum"))
    out = aligner.align(lp, tg, lengths, tl)
    assert isinstance(out, CTCAlignment)
    labels, scores = ctc_forced_align(lp, tg, lengths, tl)
    assert torch.equal(out.labels, labels) and torch.equal(out.scores, scores)
    assert [[s.token for s in spans] for spans in out.spans] == targets
    for spans, n in zip(out.spans, lengths):
        assert all(0 <= s.start < s.end <= n and 0 < s.score <= 1 for s in spans)
        assert all(a.end <= b.start for a, b in zip(spans, spans[1:]))
    assert aligner.decode(lp, lengths) == ctc_greedy_decode(lp, lengths)


@settings(max_examples=25)
@given(batch=ctc_batches())
def test_aligner_spans_from_graph_positions_equal_merge_tokens(batch):
    # the aligner builds spans from the label states of the graph; CTC puts a blank between
    # equal tokens, so they equal the spans of runs of equal frame labels
    logits, targets, lengths, blank = batch
    lengths = torch.tensor(lengths)
    tg, tl = padded(targets, fill=blank)
    lp = logits.log_softmax(-1)
    feasible = ctc_loss(lp, tg, lengths, tl, blank, reduction="none").isfinite()
    if not feasible.all():
        return
    out = CTCAligner(blank=blank).align(lp, tg, lengths, tl)
    assert out.spans == merge_tokens(out.labels, out.scores, blank)
    assert [[s.token for s in spans] for spans in out.spans] == targets
    assert all(isinstance(s, TokenSpan) for spans in out.spans for s in spans)


def test_forced_align_single_sequence_and_empty_target():
    lp = _one_hot_log_probs([0, 1, 1, 0, 2], 3).unsqueeze(0)
    labels, scores = ctc_forced_align(lp, torch.tensor([[1, 2]]))
    assert labels.tolist() == [[0, 1, 1, 0, 2]]
    empty_labels, _ = ctc_forced_align(lp, torch.zeros(1, 0, dtype=torch.long))
    assert empty_labels.tolist() == [[0] * 5]


# ---------------------------------------------------------------------------------------
# errors: one test per message
# ---------------------------------------------------------------------------------------


def _good():
    return torch.randn(2, 6, 4).log_softmax(-1), torch.tensor([[1, 2], [3, 3]])


def test_error_log_probs_not_tensor():
    with pytest.raises(TypeError, match=r"log_probs must be a torch.Tensor of shape \(B, T, C\)"):
        ctc_loss([[[0.0]]], torch.tensor([[1]]))


def test_error_log_probs_ndim():
    lp, tg = _good()
    # ctc_loss / ctc_forced_align take unbatched (T, C) input (tests/test_alignment_ctc_peer.py); align does not
    with pytest.raises(HMMDimensionError, match=r"log_probs must be batch-first \(B, T, C\); got shape \(6, 4\)") as info:
        CTCAligner().align(lp[0], tg[:1])
    assert "unsqueeze(0)" in info.value.suggestion


def test_error_log_probs_dtype():
    _, tg = _good()
    with pytest.raises(HMMDtypeError, match="log_probs must be float32 or float64; got torch.int64"):
        ctc_loss(torch.zeros(2, 6, 4, dtype=torch.long), tg)


def test_error_log_probs_empty():
    with pytest.raises(HMMDimensionError, match=r"at least one sequence, frame and class; got shape \(2, 0, 4\)"):
        ctc_loss(torch.zeros(2, 0, 4), torch.tensor([[1], [1]]))


def test_error_log_probs_nan_at_valid_frame():
    lp, tg = _good()
    lp[1, 3, 0] = float("nan")
    with pytest.raises(HMMValueError, match="log_probs must not contain NaN or \\+inf; found NaN"):
        ctc_loss(lp, tg)
    ctc_loss(lp, tg, [6, 3])  # NaN only at a padded frame: fine


def test_error_blank():
    lp, tg = _good()
    with pytest.raises(HMMValueError, match=r"blank must be an int in \[0, C\) = \[0, 4\); got 4"):
        ctc_loss(lp, tg, blank=4)


def test_error_input_lengths_range():
    lp, tg = _good()
    with pytest.raises(HMMValueError, match=r"input_lengths must be in \[0, 6\]; got values in \[-1, 7\]"):
        ctc_loss(lp, tg, [-1, 7])


def test_error_input_lengths_dtype():
    lp, tg = _good()
    with pytest.raises(HMMDtypeError, match="input_lengths must have an integer dtype; got torch.float32"):
        ctc_loss(lp, tg, torch.tensor([6.0, 6.0]))


def test_error_input_lengths_shape():
    lp, tg = _good()
    with pytest.raises(HMMDimensionError, match=r"input_lengths must be \(B,\) with B == 2; got shape \(3,\)"):
        ctc_loss(lp, tg, [6, 6, 6])


def test_error_input_lengths_not_ints():
    lp, tg = _good()
    with pytest.raises(HMMValueError, match=r"input_lengths must be a \(B,\) sequence of integers"):
        ctc_loss(lp, tg, ["a", "b"])


def test_error_targets_not_tensor():
    lp, _ = _good()
    with pytest.raises(TypeError, match="targets must be a torch.Tensor"):
        ctc_loss(lp, [[1, 2], [3, 3]])


def test_error_targets_dtype():
    lp, tg = _good()
    with pytest.raises(HMMDtypeError, match="targets must have an integer dtype; got torch.float32"):
        ctc_loss(lp, tg.float())


def test_error_targets_batch():
    lp, tg = _good()
    with pytest.raises(HMMDimensionError, match=r"targets must be \(B, S\) with B == 2 .* got shape \(1, 2\)"):
        ctc_loss(lp, tg[:1])


def test_error_targets_ndim():
    lp, tg = _good()
    with pytest.raises(HMMDimensionError, match=r"padded or \(sum\(target_lengths\),\) concatenated; got shape \(2, 2, 1\)"):
        ctc_loss(lp, tg[..., None])


def test_error_concatenated_targets_need_lengths():
    lp, tg = _good()
    with pytest.raises(HMMValueError, match="target_lengths is required with 1-D"):
        ctc_loss(lp, tg.reshape(-1))


def test_error_concatenated_targets_total():
    lp, tg = _good()
    with pytest.raises(HMMDimensionError, match="sum\\(target_lengths\\) == 3 entries; got 4"):
        ctc_loss(lp, tg.reshape(-1), None, [1, 2])


def test_error_target_lengths_range():
    lp, tg = _good()
    with pytest.raises(HMMValueError, match=r"target_lengths must be in \[0, 2\]; got values in \[1, 3\]"):
        ctc_loss(lp, tg, None, [1, 3])


def test_error_target_lengths_negative_concatenated():
    lp, tg = _good()
    with pytest.raises(HMMValueError, match=r"target_lengths must be >= 0; got values in \[-1, 5\]"):
        ctc_loss(lp, tg.reshape(-1), None, [-1, 5])


def test_error_target_is_blank():
    lp, _ = _good()
    with pytest.raises(HMMValueError, match=r"other than blank = 0; got 0 at position 1 of batch item 1"):
        ctc_loss(lp, torch.tensor([[1, 2], [3, 0]]))


def test_error_target_out_of_range():
    lp, _ = _good()
    with pytest.raises(HMMValueError, match=r"class ids in \[0, C\) = \[0, 4\) .* got 4 at position 0 of batch item 0"):
        ctc_forced_align(lp, torch.tensor([[4, 2], [3, 1]]))


def test_error_reduction():
    lp, tg = _good()
    with pytest.raises(HMMValueError, match=r"reduction must be one of \('none', 'sum', 'mean'\); got 'avg'"):
        ctc_loss(lp, tg, reduction="avg")


def test_error_aligner_arguments():
    with pytest.raises(HMMValueError, match="blank must be a non-negative int; got -1"):
        CTCAligner(blank=-1)


def test_error_merge_tokens_arguments():
    labels, scores = torch.tensor([0, 1]), torch.zeros(2)
    with pytest.raises(TypeError, match="labels must be a torch.Tensor"):
        merge_tokens([0, 1], scores)
    with pytest.raises(HMMDimensionError, match=r"labels must be \(T,\) or \(B, T\); got shape \(1, 1, 2\)"):
        merge_tokens(labels.reshape(1, 1, 2), scores.reshape(1, 1, 2))
    with pytest.raises(HMMDimensionError, match=r"scores must have the shape of labels \(2,\); got \(3,\)"):
        merge_tokens(labels, torch.zeros(3))
    with pytest.raises(HMMDtypeError, match="labels must have an integer dtype; got torch.float32"):
        merge_tokens(scores, scores)
    with pytest.raises(HMMDtypeError, match="scores must have a floating-point dtype; got torch.int64"):
        merge_tokens(labels, labels)


# ---------------------------------------------------------------------------------------
# CUDA
# ---------------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_equals_cuda():
    lp, targets, lengths = _garbage_batch()
    tg, tl = padded(targets)
    x = lp.clone().requires_grad_(True)
    loss = ctc_loss(x, tg, lengths, tl, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    xc = lp.cuda().requires_grad_(True)
    loss_c = ctc_loss(xc, tg.cuda(), lengths.cuda(), tl.cuda(), reduction="sum")
    (grad_c,) = torch.autograd.grad(loss_c, xc)
    assert loss_c.device.type == "cuda"
    torch.testing.assert_close(loss_c.cpu(), loss, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grad_c.cpu(), grad, rtol=1e-10, atol=1e-10)
    labels, scores = ctc_forced_align(lp, tg, lengths, tl)
    labels_c, scores_c = ctc_forced_align(lp.cuda(), tg, lengths, tl)  # CPU targets/lengths are moved
    assert torch.equal(labels_c.cpu(), labels)
    torch.testing.assert_close(scores_c.cpu(), scores)
    assert ctc_greedy_decode(lp.cuda(), lengths) == ctc_greedy_decode(lp, lengths)


def test_merge_tokens_scores_stay_in_unit_interval():
    """Review finding: span means from one running sum over the batch rounded past 1."""
    labels = torch.tensor([[1, 1, 0, 1, -1], [2, 0, 0, 2, 2]])
    scores = torch.log(torch.tensor([[0.5, 1, 1, 0.2, 1], [1, 1, 1, 0.5, 0.5]]))
    spans = merge_tokens(labels, scores)
    assert all(0.0 <= s.score <= 1.0 for row in spans for s in row)
    assert spans[1][0].score == 1.0 and spans[1][1].score == pytest.approx(0.5)
