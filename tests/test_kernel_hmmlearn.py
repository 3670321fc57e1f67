"""Chain kernel vs hmmlearn's forward-backward and Viterbi (reference implementation).

The emission log densities are computed here in torch and handed to the kernel; hmmlearn
computes its own from the same parameters. Several sequences of different lengths run as
one padded batch (padded frames hold NaN, which must not matter).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pytorch_hmm import kernel
from pytorch_hmm.transitions import Dense

BACKENDS = ("torch", "numba")
RTOL = 1e-8
ATOL = 1e-8


@pytest.fixture
def hmm():
    """hmmlearn.hmm, or a skip for the tests that compare with it."""
    return pytest.importorskip("hmmlearn.hmm")


def pad(seqs, fill=float("nan")):
    t_max = max(len(s) for s in seqs)
    out = np.full((len(seqs), t_max) + seqs[0].shape[1:], fill, dtype=np.float64)
    for b, s in enumerate(seqs):
        out[b, : len(s)] = s
    return out


def diag_gaussian_log_density(x: torch.Tensor, means: torch.Tensor, variances: torch.Tensor) -> torch.Tensor:
    """``(B, T, D)`` data -> ``(B, T, K)`` log N(x; mean_k, diag(var_k))."""
    diff = x[:, :, None, :] - means[None, None]  # (B, T, K, D)
    return -0.5 * (
        (diff**2 / variances).sum(-1) + torch.log(variances).sum(-1) + x.shape[-1] * math.log(2 * math.pi)
    )


def random_stochastic(rng, shape, zeros=None):
    p = rng.random(shape) + 0.05
    if zeros is not None:
        p = np.where(zeros, 0.0, p)
    return p / p.sum(-1, keepdims=True)


def check_against_hmmlearn(model, seqs, log_em, backend):
    """Kernel on the padded batch vs hmmlearn sequence by sequence."""
    lengths = torch.tensor([len(s) for s in seqs])
    trans = Dense(torch.log(torch.tensor(model.transmat_, dtype=torch.float64)))
    init = torch.log(torch.tensor(model.startprob_, dtype=torch.float64))
    args = (log_em, trans, init)
    kw = dict(lengths=lengths, backend=backend)

    log_z = kernel.log_partition(*args, **kw)
    post = kernel.posteriors(*args, **kw)
    paths, scores = kernel.viterbi(*args, **kw)
    for b, x in enumerate(seqs):
        n = len(x)
        assert float(log_z[b]) == pytest.approx(model.score(x), rel=RTOL, abs=ATOL), f"sequence {b}: log p(x)"
        np.testing.assert_allclose(post[b, :n].numpy(), model.predict_proba(x), rtol=1e-7, atol=ATOL)
        assert (post[b, n:] == 0).all()
        logprob, states = model.decode(x, algorithm="viterbi")
        assert float(scores[b]) == pytest.approx(logprob, rel=RTOL, abs=ATOL), f"sequence {b}: Viterbi score"
        np.testing.assert_array_equal(paths[b, :n].numpy(), states, err_msg=f"sequence {b}: Viterbi path")
        assert (paths[b, n:] == -1).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("topology", ["ergodic", "left_to_right"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gaussian_hmm(backend, topology, seed, hmm):
    rng = np.random.default_rng(seed)
    k, d = 4, 3
    model = hmm.GaussianHMM(n_components=k, covariance_type="diag", init_params="", params="")
    if topology == "ergodic":
        model.startprob_ = random_stochastic(rng, k)
        model.transmat_ = random_stochastic(rng, (k, k))
    else:  # zeros below the diagonal and beyond one skip: -inf edges in log space
        model.startprob_ = np.array([1.0, 0.0, 0.0, 0.0])
        i, j = np.indices((k, k))
        model.transmat_ = random_stochastic(rng, (k, k), zeros=(j < i) | (j > i + 2))
    model.means_ = rng.normal(0.0, 2.0, size=(k, d))
    model.covars_ = rng.uniform(0.3, 2.0, size=(k, d))
    model.n_features = d

    lengths = [12, 7, 1, 25, 3]
    seqs = [rng.normal(0.0, 2.5, size=(n, d)) for n in lengths]
    x = torch.tensor(pad(seqs))
    means = torch.tensor(model.means_)
    variances = torch.tensor(np.asarray(model.covars_)[:, np.arange(d), np.arange(d)])  # (K, D, D) -> diag
    log_em = diag_gaussian_log_density(x, means, variances)  # NaN at padded frames
    check_against_hmmlearn(model, seqs, log_em, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_categorical_hmm(backend, seed, hmm):
    rng = np.random.default_rng(seed)
    k, m = 3, 5
    model = hmm.CategoricalHMM(n_components=k, init_params="", params="")
    model.startprob_ = random_stochastic(rng, k)
    model.transmat_ = random_stochastic(rng, (k, k))
    model.emissionprob_ = random_stochastic(rng, (k, m))
    model.n_features = m

    lengths = [9, 1, 16, 4]
    seqs = [rng.integers(0, m, size=(n, 1)) for n in lengths]
    symbols = torch.tensor(pad([s.astype(np.float64) for s in seqs], fill=0.0)[..., 0], dtype=torch.int64)
    log_b = torch.log(torch.tensor(model.emissionprob_, dtype=torch.float64))  # (K, M)
    log_em = log_b[:, symbols].permute(1, 2, 0).contiguous()  # (B, T, K) = log emissionprob[:, x_t]
    check_against_hmmlearn(model, seqs, log_em, backend)
