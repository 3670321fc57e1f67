"""The EM convergence monitor and the progress bar."""

import pytest
import torch

from pytorch_hmm import HMM
from pytorch_hmm.emissions import Gaussian
from pytorch_hmm.errors import ConvergenceWarning
from pytorch_hmm.training import ConvergenceMonitor


def test_monitor_stops_on_small_gain_or_max_iter():
    monitor = ConvergenceMonitor(tol=0.1, max_iter=10)
    for value in [-100.0, -50.0, -49.95]:
        assert not monitor.converged
        monitor.report(value)
    assert monitor.converged and monitor.gain == pytest.approx(0.05)
    capped = ConvergenceMonitor(tol=0.0, max_iter=2)
    capped.report(-10.0)
    capped.report(-5.0)
    assert capped.converged


def test_monitor_warns_when_the_likelihood_drops():
    monitor = ConvergenceMonitor(tol=1e-4, max_iter=10)
    monitor.report(-100.0)
    with pytest.warns(ConvergenceWarning, match=r"EM log-likelihood decreased from -100.000000 to -101.000000 at iteration 2"):
        monitor.report(-101.0)
    monitor.report(-101.0 - 1e-6)  # float rounding of a total: no warning (warnings are errors here)


def test_fit_with_progress_bar(capsys):
    model = HMM(Gaussian(2, 1, means=torch.tensor([[0.0], [3.0]]), covars=torch.ones(2, 1)))
    x = torch.cat([torch.zeros(1, 20, 1), torch.full((1, 20, 1), 3.0)], 1) + 0.1 * torch.randn(1, 40, 1)
    history = model.fit(x, max_iter=3, tol=-float("inf"), verbose=True)
    assert len(history) == 3
    assert "EM" in capsys.readouterr().err  # tqdm writes the bar to stderr


def _dirichlet_log_prior(model) -> float:
    """sum (alpha - 1) log p over the start and transition probabilities, in numpy."""
    import numpy as np

    total = 0.0
    for probs, alpha in ((model.startprob_, model.startprob_prior), (model.transmat_, model.transmat_prior)):
        p, a = np.asarray(probs, dtype=np.float64), np.broadcast_to(np.asarray(alpha, dtype=np.float64), np.shape(probs))
        keep = (p > 0) & (a != 1)
        total += float(((a - 1) * np.log(np.where(keep, p, 1.0)))[keep].sum())
    return total


def test_map_em_checks_the_posterior_not_the_likelihood():
    """With a strong Dirichlet prior the log-likelihood may fall (MAP EM raises the posterior):
    no warning, and log-likelihood + log-prior (recomputed in numpy) never falls."""
    torch.manual_seed(0)
    x = torch.randn(4, 50, 2, dtype=torch.float64)
    model = HMM(Gaussian(3, 2, dtype=torch.float64), startprob_prior=2.0,
                transmat_prior=torch.eye(3, dtype=torch.float64) * 10 + 1)
    model.fit(x, max_iter=1, verbose=False, generator=torch.Generator().manual_seed(0))
    objective, likelihood = [], []
    for _ in range(8):
        prior = _dirichlet_log_prior(model)
        likelihood.append(model.fit(x, max_iter=1, verbose=False, initialize=False)[0])
        objective.append(likelihood[-1] + prior)
    assert any(b < a for a, b in zip(likelihood, likelihood[1:]))  # the likelihood alone does fall here
    assert all(b >= a - 1e-9 * abs(a) for a, b in zip(objective, objective[1:]))
    again = HMM(Gaussian(3, 2, dtype=torch.float64), startprob_prior=2.0,
                transmat_prior=torch.eye(3, dtype=torch.float64) * 10 + 1)
    history = again.fit(x, max_iter=9, tol=-1.0, verbose=False, generator=torch.Generator().manual_seed(0))
    assert history[1:] == pytest.approx(likelihood, rel=1e-12)  # the same run, in one fit: no warning
    monitor = ConvergenceMonitor(tol=-1.0, max_iter=10)
    monitor.report(-100.0, log_prior=-5.0)
    monitor.report(-101.0, log_prior=-3.0)  # the objective rose: no warning
    with pytest.warns(ConvergenceWarning, match=r"EM objective \(log-likelihood \+ Dirichlet log-prior\) decreased from "
                                                 r"-104.000000 to -106.000000 at iteration 3"):
        monitor.report(-103.0, log_prior=-3.0)
