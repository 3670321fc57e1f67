"""Models built on the shared kernel."""

from .hmm import HMM
from .layer import HMMLayer
from .mixture_hmm import MixtureGaussianHMM

__all__ = ["HMM", "HMMLayer", "MixtureGaussianHMM"]
