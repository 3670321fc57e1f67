"""Models built on the shared kernel."""

from .hmm import HMM

__all__ = ["HMM"]
