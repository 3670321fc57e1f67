"""k-means initialisation: independent of the order of sequences and frames (hmmlearn issue
#410: a fitted GMM-HMM's likelihood depended on the order of the training sequences), and
restarts (``n_init``) that keep the run with the lowest inertia."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pytorch_hmm as ph
from pytorch_hmm.emissions import Gaussian, GaussianMixture
from pytorch_hmm.emissions.kmeans import DEFAULT_N_INIT, canonical_order, kmeans
from pytorch_hmm.errors import HMMValueError


OVERLAPPING = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 1.0]]


def _blobs(n: int, centres, spread: float, seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    c = torch.as_tensor(centres, dtype=dtype)
    idx = torch.randint(0, len(c), (n,), generator=g)
    return c[idx] + spread * torch.randn(n, c.shape[1], generator=g, dtype=dtype)


def _inertia(x: np.ndarray, c: np.ndarray) -> float:
    """Sum of squared distances to the nearest centroid, by plain numpy broadcasting."""
    return float(((x[:, None, :] - c[None, :, :]) ** 2).sum(-1).min(1).sum())


def _sequences(num: int, seed: int, centres, dim: int = 2):
    g = torch.Generator().manual_seed(seed)
    seqs = []
    for _ in range(num):
        t = int(torch.randint(5, 15, (1,), generator=g))
        states = torch.randint(0, len(centres), (t,), generator=g)
        seqs.append(torch.as_tensor(centres, dtype=torch.float64)[states]
                    + 0.7 * torch.randn(t, dim, generator=g, dtype=torch.float64))
    return seqs


def _padded(seqs):
    t = max(len(s) for s in seqs)
    x = torch.full((len(seqs), t, seqs[0].shape[1]), float("nan"), dtype=seqs[0].dtype)
    mask = torch.zeros(len(seqs), t, dtype=torch.bool)
    for b, s in enumerate(seqs):
        x[b, : len(s)], mask[b, : len(s)] = s, True
    return x, mask


# ------------------------------------------------------------------- order independence


def test_canonical_order_is_a_lexicographic_sort() -> None:
    x = torch.tensor([[1.0, 2.0], [0.0, 5.0], [1.0, -1.0], [0.0, 5.0], [-3.0, 0.0]])
    order = canonical_order(x)
    want = sorted(range(5), key=lambda i: (x[i, 0].item(), x[i, 1].item(), i))  # Python's tuple order
    assert order.tolist() == want


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_permuted_points_give_bitwise_the_same_centroids(dtype) -> None:
    x = _blobs(300, [[0, 0, 0], [4, 0, 1], [0, 4, -1], [3, 3, 3]], 1.2, seed=0, dtype=dtype)
    x = torch.cat([x, x[:20], torch.zeros(3, 3, dtype=dtype), -torch.zeros(3, 3, dtype=dtype)])  # duplicates, -0.0
    c0, l0 = kmeans(x, 5, generator=torch.Generator().manual_seed(4), n_init=3)
    for seed in range(3):
        perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
        c1, l1 = kmeans(x[perm], 5, generator=torch.Generator().manual_seed(4), n_init=3)
        assert torch.equal(c0, c1)
        assert torch.equal(l0[perm], l1)  # labels follow the rows


@pytest.mark.parametrize("ct", ["diag", "full", "spherical", "tied"])
def test_gaussian_initialize_ignores_the_order_of_sequences_and_frames(ct) -> None:
    centres = [[0.0, 0.0], [3.0, 0.5], [0.5, 3.0]]
    seqs = _sequences(9, seed=1, centres=centres)
    g = torch.Generator().manual_seed(5)
    shuffled = [seqs[i] for i in torch.randperm(9, generator=g).tolist()]
    shuffled = [s[torch.randperm(len(s), generator=g)] for s in shuffled]  # frames too
    got = []
    for data in (seqs, shuffled):
        em = Gaussian(3, 2, ct, dtype=torch.float64)
        em.initialize(*_padded(data), generator=torch.Generator().manual_seed(2))
        got.append((em.means.detach().clone(), em.covars.detach().clone()))
    assert torch.equal(got[0][0], got[1][0])
    assert torch.equal(got[0][1], got[1][1])


@pytest.mark.parametrize("ct", ["diag", "full"])
def test_mixture_initialize_means_ignore_the_order(ct) -> None:
    centres = [[0.0, 0.0], [3.0, 0.5], [0.5, 3.0]]
    seqs = _sequences(12, seed=2, centres=centres)
    order = torch.randperm(12, generator=torch.Generator().manual_seed(0)).tolist()
    got = []
    for data in (seqs, [seqs[i] for i in order]):
        em = GaussianMixture(2, 2, 2, ct, dtype=torch.float64)
        em.initialize(*_padded(data), generator=torch.Generator().manual_seed(3))
        got.append((em.means.detach().clone(), em.covars.detach().clone()))
    assert torch.equal(got[0][0], got[1][0])  # k-means centroids, state and component means
    torch.testing.assert_close(got[0][1], got[1][1], rtol=1e-12, atol=0)  # data covariance: summation order only


def test_fitted_hmm_likelihood_ignores_the_order_of_sequences() -> None:
    # overlapping clusters: without the canonical order, these orders end up to 2.9 nats apart
    seqs = _sequences(10, seed=3, centres=OVERLAPPING)
    finals = []
    for seed in range(4):
        order = torch.randperm(10, generator=torch.Generator().manual_seed(seed)).tolist()
        model = ph.HMM(Gaussian(5, 2, dtype=torch.float64))
        history = model.fit([seqs[i] for i in order], max_iter=15, tol=0.0, verbose=False,
                            generator=torch.Generator().manual_seed(7))
        finals.append(history[-1])
    np.testing.assert_allclose(finals[1:], finals[0], rtol=1e-10)


def test_fitted_gmm_hmm_likelihood_ignores_the_order_of_sequences() -> None:
    """hmmlearn's issue #410: GMMHMM's fitted likelihood changed with the sequence order."""
    seqs = _sequences(10, seed=3, centres=OVERLAPPING)  # without the canonical order: 0.86 nats apart
    finals = []
    for seed in range(4):
        order = torch.randperm(10, generator=torch.Generator().manual_seed(seed)).tolist()
        model = ph.MixtureGaussianHMM(3, 2, 2, dtype=torch.float64)
        history = model.fit([seqs[i] for i in order], max_iter=10, tol=0.0, verbose=False,
                            generator=torch.Generator().manual_seed(11))
        finals.append(history[-1])
    np.testing.assert_allclose(finals[1:], finals[0], rtol=1e-10)


# ----------------------------------------------------------------------------- restarts


def test_restarts_keep_the_single_run_with_the_lowest_inertia() -> None:
    # overlapping blobs, more clusters than blobs: single runs end in different local optima
    x = _blobs(240, [[0, 0], [3, 0], [0, 3], [3, 3], [1.5, 1.5]], 0.9, seed=6)
    g = torch.Generator().manual_seed(9)
    singles = [kmeans(x, 7, generator=g, n_init=1) for _ in range(6)]  # run r follows run r - 1's draws
    inertias = [_inertia(x.numpy(), c.numpy()) for c, _ in singles]
    assert len({round(v, 9) for v in inertias}) > 1  # the runs really differ
    best, labels = kmeans(x, 7, generator=torch.Generator().manual_seed(9), n_init=6)
    i = int(np.argmin(inertias))
    assert torch.equal(best, singles[i][0]) and torch.equal(labels, singles[i][1])
    assert _inertia(x.numpy(), best.numpy()) == pytest.approx(min(inertias), rel=1e-12)
    assert all(_inertia(x.numpy(), best.numpy()) <= v * (1 + 1e-12) for v in inertias)


def test_default_restarts_are_hmmlearns_ten() -> None:
    assert DEFAULT_N_INIT == 10
    x = _blobs(120, [[0, 0], [3, 0], [0, 3]], 1.0, seed=7)
    a = kmeans(x, 4, generator=torch.Generator().manual_seed(1))
    b = kmeans(x, 4, generator=torch.Generator().manual_seed(1), n_init=10)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_inertia_and_clusters_equal_sklearns_on_separated_clusters() -> None:
    sklearn_cluster = pytest.importorskip("sklearn.cluster")
    centres = [[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10], [10, 10, 10]]
    x = _blobs(400, centres, 0.8, seed=8)
    ours, labels = kmeans(x, 5, generator=torch.Generator().manual_seed(0))
    km = sklearn_cluster.KMeans(n_clusters=5, n_init=10, random_state=0).fit(x.numpy())
    np.testing.assert_allclose(_inertia(x.numpy(), ours.numpy()), km.inertia_, rtol=1e-9)
    partition = {frozenset(np.flatnonzero(labels.numpy() == j)) for j in range(5)}
    assert partition == {frozenset(np.flatnonzero(km.labels_ == j)) for j in range(5)}
    order = np.lexsort(km.cluster_centers_.T[::-1])
    np.testing.assert_allclose(ours.numpy()[np.lexsort(ours.numpy().T[::-1])], km.cluster_centers_[order], atol=1e-9)


# ------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "3"])
def test_bad_n_init_is_a_clear_error(bad) -> None:
    with pytest.raises(HMMValueError, match=r"n_init must be a positive int; got "):
        kmeans(torch.zeros(4, 2), 2, n_init=bad)
