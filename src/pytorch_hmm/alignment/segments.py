"""Segments: one unit (phone, word, token) over a time span, the common output of every aligner."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

__all__ = ["Segment"]

Unit = Union[str, int]


@dataclass(frozen=True)
class Segment:
    """``unit`` over ``start <= t < end``: frames (ints) or seconds (floats), as the producer states.

    ``score`` is an optional confidence (for aligners: the mean per-frame probability in
    ``[0, 1]``), ``None`` where unknown.
    """

    unit: Unit
    start: Union[int, float]
    end: Union[int, float]
    score: Optional[float] = None

    @property
    def duration(self) -> Union[int, float]:
        return self.end - self.start
