"""Online decoding with bounded latency: :class:`StreamingHMMProcessor` (exact online Viterbi,
filtering, fixed-lag smoothing) and :class:`AdaptiveLatencyController`."""

from .latency import AdaptiveLatencyController, LatencyDecision
from .processor import MODES, StreamingHMMProcessor, StreamingResult

__all__ = ["StreamingHMMProcessor", "StreamingResult", "MODES", "AdaptiveLatencyController", "LatencyDecision"]
