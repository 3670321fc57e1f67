"""Alignment on top of the kernels: DTW and soft-DTW (lattice kernel), CTC loss, forced alignment and token spans (chain kernel)."""

from .acoustic import AcousticModel, Alignment, TrainingSchedule, train_flat_start
from .ctc import CTCAligner, CTCAlignment, ctc_forced_align, ctc_greedy_decode, ctc_loss
from .dtw import DTWAligner, DTWResult, dtw, pairwise_cost, soft_dtw, soft_dtw_alignment
from .forced import PhoneSet, Topology, UtteranceGraph, batch_graph, compile_utterance
from .graph import StateGraph
from .segments import (
    PhoneInterval,
    Segment,
    Tiers,
    check_segments,
    frames_to_seconds,
    read_ctm,
    read_json,
    read_phone_intervals,
    read_textgrid,
    seconds_to_frames,
    write_ctm,
    write_json,
    write_phone_intervals,
    write_textgrid,
)
from .spans import TokenSpan, merge_tokens, path_segments

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
    "Segment",
    "PhoneInterval",
    "Tiers",
    "check_segments",
    "frames_to_seconds",
    "seconds_to_frames",
    "write_textgrid",
    "read_textgrid",
    "write_ctm",
    "read_ctm",
    "write_json",
    "read_json",
    "write_phone_intervals",
    "read_phone_intervals",
    "StateGraph",
    "path_segments",
    "Topology",
    "PhoneSet",
    "UtteranceGraph",
    "compile_utterance",
    "batch_graph",
    "AcousticModel",
    "Alignment",
    "TrainingSchedule",
    "train_flat_start",
]
