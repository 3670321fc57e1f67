"""Evaluation metrics: alignment accuracy (boundaries, frames, durations, phone error rate)."""

from .alignment import (
    BoundaryScores,
    boundary_accuracy,
    boundary_f1,
    boundary_mae,
    duration_accuracy,
    frame_accuracy,
    phone_error_rate,
    strip_stress,
)
from .sequence import align_sequences, edit_distance

__all__ = [
    "BoundaryScores",
    "boundary_accuracy",
    "boundary_f1",
    "boundary_mae",
    "duration_accuracy",
    "frame_accuracy",
    "phone_error_rate",
    "strip_stress",
    "align_sequences",
    "edit_distance",
]
