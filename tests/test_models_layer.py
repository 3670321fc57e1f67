"""HMMLayer: values, gradients (gradcheck), training inside nn.Sequential, Viterbi mode."""

import pytest
import torch
from torch import nn

from pytorch_hmm import HMMLayer
from pytorch_hmm.errors import HMMDimensionError, HMMValueError
from pytorch_hmm.kernel import posteriors, viterbi


@pytest.mark.parametrize("transitions", ["ergodic", "left_to_right"])
def test_values_are_the_kernel_posteriors(transitions):
    torch.manual_seed(0)
    layer = HMMLayer(4, transitions=transitions, dtype=torch.float64)
    scores = torch.randn(3, 12, 4, dtype=torch.float64)
    lengths = torch.tensor([12, 7, 9])
    out = layer(scores, lengths)
    ref = posteriors(scores, layer.transitions, layer.initial.log_probs, lengths)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    assert (out[1, 7:] == 0).all()


@pytest.mark.parametrize("transitions", ["ergodic", "left_to_right"])
def test_gradcheck(transitions):
    torch.manual_seed(1)
    layer = HMMLayer(3, transitions=transitions, dtype=torch.float64)
    with torch.no_grad():
        layer.transition.logits.add_(torch.randn_like(layer.transition.logits) * 0.3)
        layer.initial.logits.add_(torch.randn(3, dtype=torch.float64) * 0.3)
    scores = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(2, 5, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda s: (layer(s, torch.tensor([5, 3])) * weights).sum(), (scores,))
    loss = (layer(scores, torch.tensor([5, 3])) * weights).sum()
    loss.backward()
    assert layer.transition.logits.grad is not None and torch.isfinite(layer.transition.logits.grad).all()
    assert torch.isfinite(layer.initial.logits.grad).all() and layer.initial.logits.grad.abs().sum() > 0


def test_parameter_gradients_match_finite_differences():
    torch.manual_seed(2)
    layer = HMMLayer(3, dtype=torch.float64)
    scores = torch.randn(2, 6, 3, dtype=torch.float64)
    weights = torch.randn(2, 6, 3, dtype=torch.float64)
    (layer(scores) * weights).sum().backward()
    grad = layer.transition.logits.grad.clone()
    eps = 1e-6
    numeric = torch.zeros_like(grad)
    for idx in [(0, 0), (0, 2), (1, 1), (2, 0)]:
        with torch.no_grad():
            layer.transition.logits[idx] += eps
            up = (layer(scores) * weights).sum().item()
            layer.transition.logits[idx] -= 2 * eps
            down = (layer(scores) * weights).sum().item()
            layer.transition.logits[idx] += eps
        numeric[idx] = (up - down) / (2 * eps)
        assert grad[idx].item() == pytest.approx(numeric[idx].item(), rel=1e-5, abs=1e-8)


def test_sequential_containing_the_layer_trains():
    torch.manual_seed(3)
    k, d = 3, 4
    states = torch.randint(0, k, (8, 1))
    states = states.repeat(1, 30)
    flips = torch.rand(8, 30) < 0.1
    states = torch.where(flips, torch.randint(0, k, (8, 30)), states)  # sticky labels with noise
    centres = torch.randn(k, d) * 2
    x = centres[states] + torch.randn(8, 30, d)
    model = nn.Sequential(nn.Linear(d, k), HMMLayer(k))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(60):
        optimiser.zero_grad()
        gamma = model(x)
        loss = -(gamma.clamp(min=1e-8).log().gather(-1, states.unsqueeze(-1))).mean()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert model[1].transition.logits.grad is not None


def test_viterbi_mode_in_eval():
    torch.manual_seed(4)
    layer = HMMLayer(4, mode="viterbi", dtype=torch.float64).eval()
    scores = torch.randn(2, 9, 4, dtype=torch.float64)
    out = layer(scores, torch.tensor([9, 5]))
    paths, _ = viterbi(scores, layer.transitions, layer.initial.log_probs, torch.tensor([9, 5]))
    assert torch.equal(out[0].argmax(-1), paths[0]) and (out.sum(-1)[0] == 1).all()
    assert (out[1, 5:] == 0).all() and torch.equal(out[1, :5].argmax(-1), paths[1, :5])
    assert layer.train()(scores).sum(-1).allclose(torch.ones(2, 9, dtype=torch.float64))  # posteriors when training


def test_layer_errors():
    with pytest.raises(HMMValueError, match=r"mode must be one of \('posteriors', 'viterbi'\); got 'max'"):
        HMMLayer(3, mode="max")
    with pytest.raises(HMMValueError, match="transitions must be 'ergodic' or 'left_to_right'; got 'full'"):
        HMMLayer(3, transitions="full")
    with pytest.raises(HMMDimensionError, match=r"scores must be \(B, T, K\) with K == 3; got \(2, 5, 4\)"):
        HMMLayer(3)(torch.randn(2, 5, 4))


def test_layer_takes_a_structure_like_the_hmm():
    """A static structure becomes a learned component (as for ``HMM``); other objects raise a type error naming the options."""
    from pytorch_hmm.errors import HMMTypeError
    from pytorch_hmm.transitions import Banded, BandedTransitions, left_to_right

    layer = HMMLayer(4, transitions=left_to_right(4, dtype=torch.float64), dtype=torch.float64)
    assert isinstance(layer.transition, BandedTransitions)
    torch.testing.assert_close(layer.transitions.log_probs.exp().sum(-1), torch.ones(4, dtype=torch.float64))
    assert isinstance(left_to_right(4), Banded)
    with pytest.raises(HMMTypeError, match=r"transitions must be 'ergodic', 'left_to_right', a \(K, K\) probability "
                                           r"tensor, a Dense/Banded/Sparse structure or a TransitionComponent; got list"):
        HMMLayer(3, transitions=[[1.0, 0.0], [0.0, 1.0]])


def test_without_gradients_the_layer_takes_the_fast_pass_with_the_same_values():
    layer = HMMLayer(5, "left_to_right", dtype=torch.float64)
    scores = torch.randn(3, 12, 5, dtype=torch.float64)
    lengths = torch.tensor([12, 7, 1])
    with torch.no_grad():
        fast = layer(scores, lengths)
    assert not fast.requires_grad
    slow = layer(scores, lengths)
    assert slow.requires_grad  # the differentiable pass while gradients are on
    torch.testing.assert_close(fast, slow.detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast, posteriors(scores, layer.transitions, layer.initial.log_probs, lengths))


def test_lengths_travel_through_sequential_as_a_packed_sequence():
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    torch.manual_seed(0)
    layer = HMMLayer(4)
    scores = torch.randn(3, 9, 4)
    lengths = torch.tensor([5, 9, 2])  # unsorted: the packing keeps the batch order
    packed = pack_padded_sequence(scores, lengths, batch_first=True, enforce_sorted=False)
    out = nn.Sequential(layer)(packed)
    padded, out_lengths = pad_packed_sequence(out, batch_first=True)
    assert out_lengths.tolist() == lengths.tolist()
    torch.testing.assert_close(padded, layer(scores, lengths))
    padded.sum().backward()  # differentiable through the packing
    assert layer.transition.logits.grad is not None
    with pytest.raises(HMMValueError, match="lengths must be None when scores is a PackedSequence"):
        layer(packed, lengths)


def test_layer_takes_a_probability_matrix_like_the_hmm_and_shows_its_transmat():
    probs = torch.tensor([[0.8, 0.2, 0.0], [0.0, 0.6, 0.4], [0.3, 0.0, 0.7]])
    layer = HMMLayer(3, probs)
    torch.testing.assert_close(layer.transmat, probs)
    assert torch.isneginf(layer.transitions.log_probs[0, 2])  # a zero stays a missing edge
    torch.testing.assert_close(HMMLayer(3, "left_to_right").transmat.sum(-1), torch.ones(3))
    with pytest.raises(HMMValueError, match="each row of transitions must sum to 1"):
        HMMLayer(3, probs * 0.9)
