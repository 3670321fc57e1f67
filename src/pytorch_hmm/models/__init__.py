"""Models built on the shared kernel."""

from .hmm import HMM
from .mixture_hmm import MixtureGaussianHMM

__all__ = ["HMM", "MixtureGaussianHMM"]
