"""Alignment on top of the kernels: DTW and soft-DTW (lattice kernel), CTC loss, forced alignment and token spans (chain kernel)."""

from .ctc import CTCAligner, CTCAlignment, ctc_forced_align, ctc_greedy_decode, ctc_loss
from .dtw import DTWAligner, DTWResult, dtw, pairwise_cost, soft_dtw, soft_dtw_alignment
from .spans import TokenSpan, merge_tokens

__all__ = [
    "dtw",
    "soft_dtw",
    "soft_dtw_alignment",
    "pairwise_cost",
    "DTWResult",
    "DTWAligner",
    "ctc_loss",
    "ctc_forced_align",
    "ctc_greedy_decode",
    "CTCAligner",
    "CTCAlignment",
    "TokenSpan",
    "merge_tokens",
]
