"""The shared log-space kernels (chain and semi-Markov segment): the only place in pytorch_hmm with a loop over time."""

from .chain import expected_transitions, forward_backward, forward_filter, log_partition, marginals, posteriors, viterbi
from .decoder import ViterbiDecoder
from .checkpoint import ChunkedPosteriors, PosteriorChunk, posterior_chunks
from .paths import entropy, viterbi_k
from .sampling import sample_paths, sample_posterior, sample_segments
from .steps import chain_step, forward_step, step_table, viterbi_step
from .segment import (
    SemiMarkovMarginals,
    semi_markov_log_partition,
    semi_markov_marginals,
    semi_markov_posteriors,
    semi_markov_viterbi,
)

__all__ = ["log_partition", "posteriors", "expected_transitions", "forward_backward", "marginals", "viterbi", "ViterbiDecoder", "forward_filter", "sample_paths",
           "posterior_chunks", "ChunkedPosteriors", "PosteriorChunk", "sample_segments",
           "entropy", "viterbi_k", "sample_posterior",
           "forward_step", "viterbi_step", "chain_step", "step_table",
           "semi_markov_log_partition", "semi_markov_posteriors", "semi_markov_marginals", "semi_markov_viterbi",
           "SemiMarkovMarginals"]
