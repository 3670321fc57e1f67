"""Emission models: ``log_prob(x) -> (B, T, K)`` plus EM statistics (see :mod:`.base`)."""

from .base import Emission
from .categorical import Categorical
from .gaussian import Gaussian
from .kmeans import kmeans
from .mixture import GaussianMixture
from .neural import Neural

__all__ = ["Emission", "Categorical", "Gaussian", "GaussianMixture", "Neural", "kmeans"]
