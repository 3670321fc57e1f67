"""pytorch_hmm: hidden Markov models for speech on one batched log-space kernel.

Public API so far: the chain kernel (:mod:`pytorch_hmm.kernel`, with a one-frame step API),
transition structures (dense, banded, sparse), builders and components
(:mod:`pytorch_hmm.transitions`), input checks (:mod:`pytorch_hmm.validation`), emissions (:mod:`pytorch_hmm.emissions`), the
:class:`HMM` and :class:`HSMM` models with EM training, duration distributions
(:mod:`pytorch_hmm.durations`), DTW, soft-DTW, CTC, state graphs and segments with TextGrid/CTM/JSON I/O (:mod:`pytorch_hmm.alignment`),
online decoding (:mod:`pytorch_hmm.streaming`), evaluation metrics (:mod:`pytorch_hmm.metrics`), the speech front end (audio, features,
lexicons, corpora and synthetic speech: :mod:`pytorch_hmm.speech`),
and the error types (:mod:`pytorch_hmm.errors`).
"""

from . import alignment, durations, errors, kernel, metrics, speech, streaming, transitions
from .models import HSMM, HMM, ContextualNeuralHMM, HMMLayer, MixtureGaussianHMM, NeuralHMM, SemiMarkovHMM, export_viterbi, load
from .errors import AudioError, HMMDeviceError, HMMDimensionError, HMMDtypeError, HMMTypeError, HMMValueError, InfeasibleAlignmentError
from .kernel import expected_transitions, forward_backward, log_partition, posteriors, viterbi
from .semiring import LogSemiring, MaxSemiring
from .transitions import Banded, Dense, Sparse, ergodic, left_to_right

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "HMM",
    "HSMM",
    "SemiMarkovHMM",
    "HMMLayer",
    "MixtureGaussianHMM",
    "NeuralHMM",
    "ContextualNeuralHMM",
    "load",
    "export_viterbi",
    "alignment",
    "durations",
    "errors",
    "metrics",
    "speech",
    "streaming",
    "kernel",
    "transitions",
    "Dense",
    "Banded",
    "Sparse",
    "ergodic",
    "left_to_right",
    "LogSemiring",
    "MaxSemiring",
    "log_partition",
    "posteriors",
    "expected_transitions",
    "forward_backward",
    "viterbi",
    "HMMValueError",
    "HMMTypeError",
    "HMMDimensionError",
    "HMMDtypeError",
    "HMMDeviceError",
    "InfeasibleAlignmentError",
    "AudioError",
]
