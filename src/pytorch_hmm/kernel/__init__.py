"""The shared log-space chain kernel: the only place in pytorch_hmm with a loop over time."""

from .chain import expected_transitions, forward_backward, log_partition, marginals, posteriors, viterbi
from .sampling import sample_paths

__all__ = ["log_partition", "posteriors", "expected_transitions", "forward_backward", "marginals", "viterbi", "sample_paths"]
