"""Models built on the shared kernel."""

from .export import export_viterbi
from .hmm import HMM
from .hsmm import HSMM, SemiMarkovHMM
from .layer import HMMLayer
from .mixture_hmm import MixtureGaussianHMM
from .neural import ContextualNeuralHMM, NeuralHMM
from .neural_emission import FactorisedGaussian, FrameStateEmission
from .saving import load

__all__ = ["HMM", "HSMM", "SemiMarkovHMM", "HMMLayer", "MixtureGaussianHMM", "NeuralHMM", "ContextualNeuralHMM", "FrameStateEmission", "FactorisedGaussian", "load", "export_viterbi"]
