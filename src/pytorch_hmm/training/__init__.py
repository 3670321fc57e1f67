"""EM training: the data forms ``fit`` accepts, the EM loop and its convergence monitor."""

from .em import fit_em
from .monitor import ConvergenceMonitor

__all__ = ["fit_em", "ConvergenceMonitor"]
