"""Evaluation metrics: mel-cepstral distortion, F0 and voicing errors, alignment accuracy (boundaries, frames, durations, phone error rate)."""

from .alignment import (
    BoundaryError,
    BoundaryScores,
    boundary_accuracy,
    boundary_errors,
    boundary_f1,
    boundary_mae,
    duration_accuracy,
    frame_accuracy,
    phone_error_rate,
    strip_stress,
)
from .pitch import estimate_f0, f0_frame_error, f0_rmse, gross_pitch_error, vuv_error_rate
from .sequence import align_sequences, edit_distance
from .spectral import all_pass_alpha, mel_cepstral_distortion, mel_cepstrum

__all__ = [
    "mel_cepstral_distortion",
    "mel_cepstrum",
    "all_pass_alpha",
    "f0_rmse",
    "vuv_error_rate",
    "gross_pitch_error",
    "f0_frame_error",
    "estimate_f0",
    "BoundaryError",
    "BoundaryScores",
    "boundary_accuracy",
    "boundary_errors",
    "boundary_f1",
    "boundary_mae",
    "duration_accuracy",
    "frame_accuracy",
    "phone_error_rate",
    "strip_stress",
    "align_sequences",
    "edit_distance",
]
