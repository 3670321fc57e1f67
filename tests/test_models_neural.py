"""NeuralHMM / ContextualNeuralHMM: the likelihood against brute force over every monotone alignment
with the emissions written out in full, gradients against finite differences, batch == items,
durations recovered on a toy task, generation constraints, errors."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from pytorch_hmm import ContextualNeuralHMM, NeuralHMM
from pytorch_hmm.errors import HMMDimensionError, HMMDtypeError, HMMTypeError, HMMValueError
from pytorch_hmm.models import FactorisedGaussian, FrameStateEmission

TOKENS = torch.tensor([[1, 3, 2], [2, 0, 0]])
TOKEN_LENGTHS = torch.tensor([3, 1])
FRAME_LENGTHS = torch.tensor([8, 5])


def gaussian_emissions(model, x, frame_part, state_part):
    """(B, T, K) log-densities of the default emission written out as (B, T, K, D) Normals."""
    n, s = model.emission.state_params(state_part)
    if frame_part is None:
        m, g = torch.zeros_like(x), torch.ones_like(x)
    else:
        m, g = model.emission.frame_params(frame_part)
    dist = torch.distributions.Normal(m[:, :, None] + n[:, None], g[:, :, None] * s[:, None])
    return dist.log_prob(x[:, :, None]).sum(-1)


def brute_force(model, tokens, token_lengths, x, lengths, context=None, emissions=gaussian_emissions):
    """log p(x | tokens) by enumerating every monotone path, from emissions written out as (B, T, K, D)."""
    state_part, v, num_states = model.encode(tokens, token_lengths, context)
    if model.autoregressive:
        previous = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], 1)
        frame_part, u, _ = model.decode(previous, context)
    else:
        frame_part, u = None, x.new_zeros(x.shape[:2])
    em = emissions(model, x, frame_part, state_part)  # (B, T, K)
    out = []
    for b in range(x.shape[0]):
        t_b, k_b = int(lengths[b]), int(num_states[b])
        scores = []
        for moves in itertools.combinations(range(1, t_b), k_b - 1):  # the frames where the next state starts
            path = [sum(1 for mv in moves if mv <= t) for t in range(t_b)]
            score = em[b, 0, 0]
            for t in range(1, t_b):
                logit = u[b, t - 1] + v[b, path[t - 1]]
                score = score + (F.logsigmoid(logit) if path[t] == path[t - 1] else F.logsigmoid(-logit)) + em[b, t, path[t]]
            scores.append(score)
        out.append(torch.logsumexp(torch.stack(scores), 0))
    return torch.stack(out)


class Laplace(FrameStateEmission):
    """A test emission unlike the default: Laplace with location m_t + n_k and scale c * softplus(s'_k),
    with a learnable global factor c: its own parameter must train with the model."""

    def __init__(self, feature_dim):
        super().__init__()
        self.feature_dim, self.frame_dim, self.state_dim = feature_dim, feature_dim, 2 * feature_dim
        self.log_c = torch.nn.Parameter(torch.tensor(0.3))

    def scale(self, state):
        return self.log_c.exp() * F.softplus(state[..., self.feature_dim:]) + 0.05

    def log_density(self, features, frame, state):  # (B, T, D), (B, T, F) or None, (B, K, S)
        loc = state[:, None, :, :self.feature_dim]  # (B, 1, K, D)
        if frame is not None:
            loc = loc + frame[:, :, None]
        scale = self.scale(state)[:, None]  # (B, 1, K, D)
        return (-(features[:, :, None] - loc).abs() / scale - torch.log(2 * scale)).sum(-1)

    def sample(self, frame, state, temperature, generator=None):  # (B, F) or None, (B, S)
        loc = state[:, :self.feature_dim] + (0 if frame is None else frame)
        u = torch.rand(loc.shape, dtype=loc.dtype, generator=generator) - 0.5
        return loc - temperature * self.scale(state) * u.sign() * torch.log1p(-2 * u.abs())


def laplace_emissions(model, x, frame_part, state_part):
    d = model.feature_dim
    loc = state_part[:, None, :, :d] if frame_part is None else frame_part[:, :, None] + state_part[:, None, :, :d]
    scale = model.emission.log_c.exp() * F.softplus(state_part[:, None, :, d:]) + 0.05
    return torch.distributions.Laplace(loc, scale).log_prob(x[:, :, None]).sum(-1)


def model_for(kind, **kw):
    torch.manual_seed(0)
    if kind == "contextual":
        return ContextualNeuralHMM(6, 2, context_dim=3, hidden_dim=8, **kw).double().eval()
    return NeuralHMM(6, 2, hidden_dim=8, autoregressive=kind == "ar", **kw).double().eval()  # eval: no prenet dropout


@pytest.mark.parametrize("kind", ["non_ar", "ar", "contextual"])
def test_likelihood_equals_brute_force(kind):
    model = model_for(kind)
    x = torch.randn(2, 8, 2, dtype=torch.float64) * 2
    context = torch.randn(2, 3, dtype=torch.float64) if kind == "contextual" else None
    got = model(TOKENS, TOKEN_LENGTHS, x, FRAME_LENGTHS, context)
    expected = brute_force(model, TOKENS, TOKEN_LENGTHS, x, FRAME_LENGTHS, context)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["non_ar", "ar"])
def test_batch_equals_items(kind):
    model = model_for(kind)
    x = torch.randn(2, 8, 2, dtype=torch.float64)
    batch = model(TOKENS, TOKEN_LENGTHS, x, FRAME_LENGTHS)
    for b in range(2):
        n, t = int(TOKEN_LENGTHS[b]), int(FRAME_LENGTHS[b])
        alone = model(TOKENS[b:b + 1, :n], TOKEN_LENGTHS[b:b + 1], x[b:b + 1, :t], FRAME_LENGTHS[b:b + 1])
        torch.testing.assert_close(batch[b:b + 1], alone, rtol=1e-12, atol=1e-12)


def test_gradients_pass_finite_differences():
    model = model_for("ar")
    x = torch.randn(2, 8, 2, dtype=torch.float64, requires_grad=True)
    context = None
    assert torch.autograd.gradcheck(lambda f: model(TOKENS, TOKEN_LENGTHS, f, FRAME_LENGTHS, context), (x,))
    # parameters: the analytic gradient of a few entries against central differences
    loss = model(TOKENS, TOKEN_LENGTHS, x.detach(), FRAME_LENGTHS).sum()
    params = dict(model.named_parameters())
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
    for name in ("state_out.weight", "frame_out.bias", "embedding.weight", "decoder.weight_hh_l0"):
        p = params[name]
        for idx in [(0,) * p.ndim, tuple(i // 2 for i in p.shape)]:
            with torch.no_grad():
                old = p[idx].item()
                p[idx] = old + 1e-6
                up = model(TOKENS, TOKEN_LENGTHS, x.detach(), FRAME_LENGTHS).sum()
                p[idx] = old - 1e-6
                down = model(TOKENS, TOKEN_LENGTHS, x.detach(), FRAME_LENGTHS).sum()
                p[idx] = old
            assert grads[name][idx].item() == pytest.approx(((up - down) / 2e-6).item(), rel=1e-5, abs=1e-7), name


def test_training_recovers_known_durations():
    """Tokens with distinct 1-D means and known durations: a non-autoregressive model trained by
    gradient descent on the exact likelihood aligns held-out utterances to within a frame."""
    g = torch.Generator().manual_seed(0)
    means = torch.tensor([-3.0, 0.0, 3.0, 6.0])

    def utterance():
        tokens = torch.randperm(4, generator=g)[:3]
        durations = torch.randint(3, 9, (3,), generator=g)
        frames = torch.cat([means[k].repeat(int(d)) for k, d in zip(tokens, durations)])
        return tokens, durations, frames + 0.3 * torch.randn(frames.shape, generator=g)

    def batch(n):
        items = [utterance() for _ in range(n)]
        t = max(len(f) for _, _, f in items)
        x = torch.zeros(n, t, 1)
        for i, (_, _, f) in enumerate(items):
            x[i, : len(f), 0] = f
        return (torch.stack([tk for tk, _, _ in items]), torch.full((n,), 3), x,
                torch.tensor([len(f) for _, _, f in items]), torch.stack([d for _, d, _ in items]))

    torch.manual_seed(0)
    model = NeuralHMM(4, 1, states_per_token=1, hidden_dim=16, autoregressive=False)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    train = batch(32)
    for _ in range(150):
        opt.zero_grad()
        loss = -model(*train[:4]).mean() / train[3].float().mean()
        loss.backward()
        opt.step()
    tokens, token_lengths, x, lengths, truth = batch(16)
    durations, post = model.align(tokens, token_lengths, x, lengths)
    assert (durations - truth).abs().max() <= 1
    assert torch.allclose(post.sum(-1)[torch.arange(x.shape[1]) < lengths[:, None]], torch.ones(()), atol=1e-5)


@pytest.mark.parametrize("kind", ["non_ar", "ar", "contextual"])
def test_generate_gives_every_state_a_frame_and_respects_max_frames(kind):
    model = model_for(kind)
    context = torch.randn(2, 3, dtype=torch.float64) if kind == "contextual" else None
    for threshold in (0.5, 0.1, None):
        g = torch.Generator().manual_seed(1)
        x, lengths, durations = model.generate(TOKENS, TOKEN_LENGTHS, context, duration_threshold=threshold,
                                               max_frames=400, generator=g, return_durations=True)
        states = TOKEN_LENGTHS * 2
        for b in range(2):
            assert (durations[b, : states[b]] >= 1).all() and (durations[b, states[b]:] == 0).all()
            assert int(durations[b].sum()) == int(lengths[b])
            assert (x[b, lengths[b]:] == 0).all() and torch.isfinite(x).all()
    x, lengths, durations = model.generate(TOKENS, TOKEN_LENGTHS, context, max_frames=4, return_durations=True)
    assert x.shape[1] <= 4 and (lengths <= 4).all() and int(durations[0].sum()) == 4
    slow = model.generate(TOKENS, TOKEN_LENGTHS, context, duration_threshold=0.05, temperature=0.0)[1]
    fast = model.generate(TOKENS, TOKEN_LENGTHS, context, duration_threshold=0.9, temperature=0.0)[1]
    assert (slow >= fast).all() and (slow > fast).any()


def test_errors():
    model = model_for("ar")
    x = torch.zeros(2, 8, 2, dtype=torch.float64)
    with pytest.raises(HMMDimensionError, match=r"tokens must be a \(B, N\) integer tensor; got \(3,\)"):
        model(torch.tensor([1, 2, 3]), TOKEN_LENGTHS, x, FRAME_LENGTHS)
    with pytest.raises(HMMDtypeError, match=r"tokens must have an integer dtype; got torch.float32"):
        model(TOKENS.float(), TOKEN_LENGTHS, x, FRAME_LENGTHS)
    with pytest.raises(HMMValueError, match=r"tokens must be ids in \[0, num_tokens\) = \[0, 6\); got values in \[1, 9\]"):
        model(torch.tensor([[1, 9, 2], [2, 0, 0]]), TOKEN_LENGTHS, x, FRAME_LENGTHS)
    with pytest.raises(HMMDimensionError, match=r"features must be \(B, T, D\) with D == 2; got \(2, 8, 3\)"):
        model(TOKENS, TOKEN_LENGTHS, torch.zeros(2, 8, 3, dtype=torch.float64), FRAME_LENGTHS)
    with pytest.raises(HMMDimensionError, match=r"features must have the batch size of tokens, B == 2"):
        model(TOKENS, TOKEN_LENGTHS, torch.zeros(3, 8, 2, dtype=torch.float64), FRAME_LENGTHS)
    with pytest.raises(HMMDtypeError, match=r"features must have the model's dtype \(torch.float64\); got torch.float32"):
        model(TOKENS, TOKEN_LENGTHS, x.float(), FRAME_LENGTHS)
    with pytest.raises(HMMValueError, match=r"features must be finite at valid frames"):
        model(TOKENS, TOKEN_LENGTHS, torch.full_like(x, float("nan")), FRAME_LENGTHS)
    with pytest.raises(HMMValueError, match=r"feature_lengths must give every state at least one frame: item 0 has 5 "
                                            r"frames for 3 tokens x 2 states = 6 states"):
        model(TOKENS, TOKEN_LENGTHS, x, torch.tensor([5, 5]))
    with pytest.raises(HMMValueError, match=r"token_lengths must be in \[1, N\] = \[1, 3\]"):
        model(TOKENS, torch.tensor([4, 1]), x, FRAME_LENGTHS)
    with pytest.raises(HMMValueError, match=r"context is only for a model built with context_dim > 0"):
        model(TOKENS, TOKEN_LENGTHS, x, FRAME_LENGTHS, torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(HMMDimensionError, match=r"context must be \(B, C\) == \(2, 3\); got \(2, 4\)"):
        model_for("contextual")(TOKENS, TOKEN_LENGTHS, x, FRAME_LENGTHS, torch.zeros(2, 4, dtype=torch.float64))
    with pytest.raises(HMMValueError, match=r"context_dim must be a positive int; got 0"):
        ContextualNeuralHMM(6, 2, context_dim=0)
    with pytest.raises(HMMValueError, match=r"duration_threshold must be a positive finite number below 1; got 1.5"):
        model.generate(TOKENS, TOKEN_LENGTHS, duration_threshold=1.5)
    with pytest.raises(HMMValueError, match=r"max_frames must be a positive int; got 0"):
        model.generate(TOKENS, TOKEN_LENGTHS, max_frames=0)
    with pytest.raises(HMMValueError, match=r"prenet_dropout must be a finite number >= 0 below 1; got 1.0"):
        NeuralHMM(6, 2, prenet_dropout=1.0)
    with pytest.raises(HMMTypeError, match=r"emission must be a FrameStateEmission; got Linear"):
        NeuralHMM(6, 2, emission=torch.nn.Linear(2, 2))
    with pytest.raises(HMMValueError, match=r"emission.feature_dim must equal feature_dim = 2; got 3"):
        NeuralHMM(6, 2, emission=FactorisedGaussian(3))


def test_prenet_dropout_acts_in_training_mode_only():
    model = model_for("ar")
    x = torch.randn(2, 8, 2, dtype=torch.float64)
    assert torch.equal(model(TOKENS, TOKEN_LENGTHS, x, FRAME_LENGTHS), model(TOKENS, TOKEN_LENGTHS, x, FRAME_LENGTHS))
    model.train()
    assert not torch.equal(model(TOKENS, TOKEN_LENGTHS, x, FRAME_LENGTHS), model(TOKENS, TOKEN_LENGTHS, x, FRAME_LENGTHS))


@pytest.mark.parametrize("kind", ["non_ar", "ar"])
def test_emission_is_a_drop_in(kind):
    """A different emission (Laplace, with a parameter of its own) plugs in: the likelihood equals brute
    force with its densities written out, its parameter gets a gradient, and generation runs on it."""
    torch.manual_seed(0)
    model = NeuralHMM(6, 2, hidden_dim=8, autoregressive=kind == "ar", emission=Laplace(2)).double().eval()
    assert model.state_out.out_features == 2 * 2 + 1
    assert kind == "non_ar" or model.frame_out.out_features == 2 + 1
    x = torch.randn(2, 8, 2, dtype=torch.float64) * 2
    got = model(TOKENS, TOKEN_LENGTHS, x, FRAME_LENGTHS)
    expected = brute_force(model, TOKENS, TOKEN_LENGTHS, x, FRAME_LENGTHS, emissions=laplace_emissions)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    (grad,) = torch.autograd.grad(got.sum(), [model.emission.log_c])
    assert grad.abs() > 0
    assert any(p is model.emission.log_c for p in model.parameters())
    g = torch.Generator().manual_seed(0)
    features, lengths, durations = model.generate(TOKENS, TOKEN_LENGTHS, max_frames=200, generator=g, return_durations=True)
    assert (durations[0, :6] >= 1).all() and (durations[1, :2] >= 1).all() and torch.isfinite(features).all()


def test_default_emission_samples_its_mean_at_temperature_zero():
    emission = FactorisedGaussian(3, std_floor=0.1)
    frame, state = torch.randn(4, 6), torch.randn(4, 6)
    m, g = emission.frame_params(frame)
    n, s = emission.state_params(state)
    assert (g >= 1).all() and (s >= 0.1).all()
    torch.testing.assert_close(emission.sample(frame, state, 0.0), m + n)
    torch.testing.assert_close(emission.sample(None, state, 0.0), n)
    draws = torch.stack([emission.sample(frame, state, 1.0, torch.Generator().manual_seed(i)) for i in range(4000)])
    torch.testing.assert_close(draws.mean(0), m + n, atol=0.15 * float((g * s).max()), rtol=0)
    torch.testing.assert_close(draws.std(0), g * s, rtol=0.06, atol=0)
