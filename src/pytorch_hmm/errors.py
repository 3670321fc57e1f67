"""Exception types raised by pytorch_hmm.

Every error about user input is a ``ValueError`` subclass whose message names the
argument, what was expected and what was given.
"""

from __future__ import annotations

from typing import Optional, Sequence


class HMMValueError(ValueError):
    """Bad input value (NaN, out-of-range lengths, probabilities that do not sum to 1, ...)."""


class HMMTypeError(HMMValueError, TypeError):
    """An argument has the wrong type (e.g. a list where a tensor is needed).

    Also a ``TypeError``, so ``except TypeError`` keeps working.
    """


class HMMDimensionError(HMMValueError):
    """An input tensor has the wrong number of dimensions or the wrong shape.

    Attributes:
        expected_shape: the expected shape, with names for free dimensions (e.g. ``("B", "T", 5)``).
        actual_shape: the shape that was given.
        suggestion: a hint on how to fix the call, or ``None``.
    """

    def __init__(
        self,
        message: str,
        expected_shape: Optional[Sequence] = None,
        actual_shape: Optional[Sequence] = None,
        suggestion: Optional[str] = None,
    ) -> None:
        self.expected_shape = tuple(expected_shape) if expected_shape is not None else None
        self.actual_shape = tuple(actual_shape) if actual_shape is not None else None
        self.suggestion = suggestion
        full = message if suggestion is None else f"{message}. {suggestion}"
        super().__init__(full)


class HMMDtypeError(HMMValueError):
    """An input tensor has an unsupported dtype or a dtype that differs from the others."""


class HMMDeviceError(HMMValueError):
    """Input tensors live on different devices."""


class InfeasibleAlignmentError(HMMValueError):
    """No state path has a finite score, so no alignment exists."""


class AudioError(HMMValueError):
    """An audio file is missing, unreadable, empty or not in a supported format.

    Attributes:
        path: the file that could not be used.
    """

    def __init__(self, path: object, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"audio file {str(path)!r}: {reason}")


__all__ = [
    "AudioError",
    "HMMValueError",
    "HMMTypeError",
    "HMMDimensionError",
    "HMMDtypeError",
    "HMMDeviceError",
    "InfeasibleAlignmentError",
]


class ConvergenceWarning(RuntimeWarning):
    """EM did something it should not (e.g. the log-likelihood decreased between iterations)."""


__all__.append("ConvergenceWarning")
