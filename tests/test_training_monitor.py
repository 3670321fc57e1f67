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
