"""The data forms ``fit`` accepts, turned into re-iterable ``(x, lengths)`` batches."""

from __future__ import annotations

import types
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from ..errors import HMMDimensionError, HMMTypeError, HMMValueError
from ..validation import check_lengths

Batch = Tuple[torch.Tensor, Optional[torch.Tensor]]
Data = Union[torch.Tensor, Sequence[torch.Tensor], Iterable]


def as_batches(data: Data, lengths: Optional[torch.Tensor] = None) -> List[Batch] | Iterable[Batch]:
    """Normalise ``fit``'s data argument.

    * a padded tensor ``(B, T, ...)`` with optional ``lengths`` ``(B,)``: one batch;
    * a list/tuple of per-sequence tensors ``(T_i, ...)``: padded into one batch;
    * any other re-iterable (e.g. a ``DataLoader``) of tensors or ``(x, lengths)`` pairs:
      every item is a batch, iterated once per EM iteration.
    """
    if isinstance(data, torch.Tensor):
        if data.ndim < 2 or data.shape[0] == 0 or data.shape[1] == 0:
            raise HMMDimensionError(
                f"data must be a padded (B, T, ...) tensor with B >= 1 sequences of T >= 1 frames; got shape {tuple(data.shape)}",
                expected_shape=("B>0", "T>0", "..."), actual_shape=data.shape,
            )
        if lengths is not None:
            lengths = check_lengths(lengths, "lengths", data.shape[0], data.shape[1], data.device, limit_name="T")
        return [(data, lengths)]
    if lengths is not None:
        raise HMMValueError("lengths is only accepted with a padded tensor; batches carry their own lengths")
    if isinstance(data, (list, tuple)) and not data:
        raise HMMValueError("data must hold at least one sequence; got an empty " + type(data).__name__)
    if isinstance(data, (list, tuple)) and data and all(isinstance(d, torch.Tensor) for d in data):
        if any(d.ndim == 0 or d.shape[0] == 0 for d in data):
            raise HMMDimensionError("every sequence in data must have at least one frame; got an empty one")
        lens = torch.tensor([d.shape[0] for d in data], dtype=torch.long)
        return [(pad_sequence(list(data), batch_first=True), lens)]
    if isinstance(data, (types.GeneratorType, Iterator)):
        raise HMMValueError("data must be re-iterable for EM (a tensor, a list or a DataLoader); got a one-shot iterator")
    if isinstance(data, Iterable):
        return _Rebatch(data)
    raise HMMTypeError(f"data must be a padded tensor, a list of tensors or an iterable of batches; got {type(data).__name__}")


def check_weights(weights, num_sequences: int, dtype: torch.dtype, device) -> torch.Tensor:
    """``weights`` (one per sequence: a list, numpy array or tensor) as a ``(B,)`` tensor of
    ``dtype`` on ``device``; they must be finite, ``>= 0`` and not all 0."""
    if not isinstance(weights, (torch.Tensor, np.ndarray, list, tuple)):
        raise HMMTypeError(f"weights must be one number per sequence (a list, array or tensor); got {type(weights).__name__}")
    try:
        w = weights if isinstance(weights, torch.Tensor) else torch.as_tensor(np.asarray(weights, dtype=float))
    except (TypeError, ValueError) as err:
        raise HMMTypeError(f"weights must be one number per sequence (a list, array or tensor); got {weights!r}") from err
    if w.dtype == torch.bool or w.is_complex():
        raise HMMTypeError(f"weights must be real numbers, one per sequence; got dtype {w.dtype}")
    if w.ndim != 1 or w.shape[0] != num_sequences:
        raise HMMDimensionError(f"weights must be (B,) with one weight per sequence, B == {num_sequences}; got shape {tuple(w.shape)}",
                                expected_shape=(num_sequences,), actual_shape=w.shape)
    w = w.to(dtype=dtype, device=device)
    bad = torch.nonzero(~(torch.isfinite(w) & (w >= 0))).flatten().tolist()
    if bad:
        raise HMMValueError(f"weights must be finite and >= 0; sequences {bad} have {w[bad].tolist()}")
    if not bool((w > 0).any()):
        raise HMMValueError("weights must give some sequence a weight > 0; got all 0")
    return w


class _Rebatch:
    """Re-iterable view of an iterable whose items are tensors or ``(x, lengths)`` pairs."""

    def __init__(self, source: Iterable) -> None:
        self.source = source

    def __iter__(self) -> Iterator[Batch]:
        for item in self.source:
            if isinstance(item, torch.Tensor):
                yield item, None
            elif isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], torch.Tensor):
                yield item[0], item[1]
            else:
                raise HMMTypeError(f"each batch must be a tensor or an (x, lengths) pair; got {type(item).__name__}")
