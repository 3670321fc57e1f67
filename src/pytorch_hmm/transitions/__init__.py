"""Transition structures for the chain kernel (:mod:`.storage`) and builders for common topologies (:mod:`.builders`)."""

from .builders import ergodic, left_to_right
from .storage import Banded, Dense, Sparse, TransitionStructure

__all__ = ["TransitionStructure", "Dense", "Banded", "Sparse", "ergodic", "left_to_right"]
