"""Transition structures for the chain kernel (:mod:`.storage`) and builders for common topologies (:mod:`.builders`)."""

from .builders import ergodic, left_to_right
from .storage import Banded, Dense, Sparse, TransitionStructure
from .components import (BandedTransitions, Component, DenseTransitions, Final, FixedTransitions, Initial,
                         LearnedFinal, SparseTransitions, TransitionComponent, as_transition_component)

__all__ = ["TransitionStructure", "Dense", "Banded", "Sparse", "ergodic", "left_to_right"]
__all__ += ["Component", "Initial", "TransitionComponent", "DenseTransitions", "BandedTransitions",
            "SparseTransitions", "FixedTransitions", "Final", "LearnedFinal", "as_transition_component"]
