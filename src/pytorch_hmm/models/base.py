"""What every state-sequence model shares: an emission, an initial component, EM over components."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, Optional, Union

import torch
from torch import nn

from ..emissions.base import Emission
from ..errors import HMMDimensionError, HMMTypeError
from ..training.em import frozen_names, initialize_emission
from ..validation import frame_mask
from ..transitions.components import Final, Initial, LearnedFinal
from ..validation import check_stochastic

# old-format state-dict keys (before components) -> new keys
_OLD_KEYS = {"transition_logits": "transition.logits", "init_logits": "initial.logits", "log_final": "final.log_weights"}


class EmissionModel(nn.Module):
    """Base of :class:`~pytorch_hmm.HMM` and :class:`~pytorch_hmm.HSMM`.

    Holds ``emission``, takes the emission's dtype (``self._dtype``) and device, and gives the
    shared properties, emission scores, the initial component (``initial``) and the EM protocol
    over the components named by :meth:`em_parts` (``fit_em`` calls ``init_stats``,
    ``accumulate`` (model-specific: one kernel pass, counts handed to each component) and ``m_step``).
    """

    def __init__(self, emission: Emission) -> None:
        super().__init__()
        if not isinstance(emission, Emission):
            raise HMMTypeError(f"emission must be a pytorch_hmm.emissions Emission; got {type(emission).__name__}")
        self.emission = emission
        reference = next((t for t in list(emission.parameters()) + list(emission.buffers()) if t.is_floating_point()), None)
        self._dtype = reference.dtype if reference is not None else torch.float32
        self._device = reference.device if reference is not None else None

    def _set_initial(self, initial: Union[Initial, torch.Tensor, None], default: Initial) -> None:
        """Register ``initial`` (an :class:`Initial`, ``(K,)`` probabilities or ``None`` for ``default``), then move to the emission's device."""
        if initial is None:
            initial = default
        elif isinstance(initial, torch.Tensor):
            initial = Initial.from_probs(check_probs(initial, "init_probs", (self.num_states,)).to(self._dtype))
        elif not isinstance(initial, Initial):
            raise HMMTypeError(f"initial must be an Initial component or a (K,) probability tensor; got {type(initial).__name__}")
        if initial.num_states != self.num_states:
            raise HMMDimensionError(f"initial must describe K == {self.num_states} states (the emission's); got {initial.num_states}",
                                    expected_shape=(self.num_states,), actual_shape=initial.logits.shape)
        self.initial = initial.to(self._dtype)
        if self._device is not None:  # live where the emission lives
            self.to(self._device)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        rename_old_keys(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def num_states(self) -> int:
        return self.emission.num_states

    def _initialize_for_gradient_training(self, x: torch.Tensor, lengths: Optional[torch.Tensor]) -> None:
        """A fresh emission (placeholder parameters: every state the same, so gradients could
        never tell them apart) is initialised from the first batch it is trained on, as ``fit``
        initialises it (like PyTorch's lazy modules); scoring (``eval()`` or ``torch.no_grad()``)
        never changes it."""
        if self.training and torch.is_grad_enabled() and getattr(self.emission, "needs_init", False) and not x.is_meta:
            with torch.no_grad():
                initialize_emission(self, [(x.detach(), lengths)], "auto")

    def save(self, path) -> Path:
        """Write the whole model (its settings and parameters) to ``path``; :func:`pytorch_hmm.load` reads it back.

        The file is a plain dictionary that ``torch.load(path, weights_only=True)`` can read
        (no pickled classes): see :mod:`pytorch_hmm.models.saving`.
        """
        from .saving import save

        return save(self, path)

    @property
    def log_init(self) -> torch.Tensor:
        """``(K,)`` log initial probabilities."""
        return self.initial.log_probs

    @property
    def init_probs(self) -> torch.Tensor:
        return self.log_init.exp()

    def log_emissions(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(B, T, K)`` emission log-likelihoods; padded frames (past ``lengths``) are not read."""
        if lengths is None:
            return self.emission.log_prob(x)
        lengths = torch.as_tensor(lengths, device=x.device)
        if lengths.ndim != 1 or lengths.shape[0] != x.shape[0]:
            raise HMMDimensionError(
                f"lengths must be (B,) with B == {x.shape[0]}; got shape {tuple(lengths.shape)}",
                expected_shape=(x.shape[0],),
                actual_shape=lengths.shape,
            )
        return self.emission.log_prob(x, frame_mask(lengths, x.shape[1], x.device))

    # --- EM over components (used by fit_em) ---

    def em_parts(self) -> Dict[str, nn.Module]:
        """The components EM may update, by the names ``frozen=`` takes (``"final"`` with learned end probabilities)."""
        parts = {"init_probs": self.initial, "transitions": self.transition, "emission": self.emission}
        if getattr(getattr(self, "final", None), "learned", False):
            parts["final"] = self.final
        return parts

    def init_stats(self, frozen: Iterable[str] = ()) -> Dict[str, dict]:
        """Zero statistics of every component EM updates (not frozen, with a closed-form M-step)."""
        frozen = frozen_names(frozen)
        return {name: part.init_stats() for name, part in self.em_parts().items()
                if name not in frozen and getattr(part, "has_m_step", True)}

    def _accumulate_parts(self, stats: Dict[str, dict], x: torch.Tensor, lengths: Optional[torch.Tensor],
                          posteriors: torch.Tensor, counts: Dict[str, torch.Tensor],
                          weights: Optional[torch.Tensor] = None) -> None:
        """Hand each component its counts (``counts`` by part name, each with a leading batch axis)
        and the emission its posteriors; ``weights`` ``(B,)`` scale every sequence's share."""
        if weights is not None:
            scale = lambda t: t * weights.to(t.dtype).reshape((-1,) + (1,) * (t.ndim - 1))  # noqa: E731
            counts = {name: scale(value) for name, value in counts.items()}
            posteriors = scale(posteriors)
        parts = self.em_parts()
        for name, value in counts.items():
            if name in stats:
                parts[name].accumulate(stats[name], value)
        if "emission" in stats:
            mask = torch.ones(posteriors.shape[:2], dtype=torch.bool, device=posteriors.device) if lengths is None \
                else frame_mask(lengths, posteriors.shape[1], posteriors.device)
            self.emission.accumulate(stats["emission"], x, posteriors, mask)

    @torch.no_grad()
    def m_step(self, stats: Dict[str, dict], frozen: Iterable[str] = ()) -> None:
        """M-step of every component with statistics (rows/groups without counts keep their values)."""
        frozen = frozen_names(frozen)
        parts = self.em_parts()
        for name, s in stats.items():
            if name not in frozen:
                parts[name].m_step(s)


def rename_old_keys(state_dict: dict, prefix: str) -> None:
    """In place: map state-dict keys saved before the components existed (``transition_logits``,
    ``init_logits``, ``log_final``) to the components' keys, so old checkpoints still load."""
    for old, new in _OLD_KEYS.items():
        if prefix + old in state_dict and prefix + new not in state_dict:
            state_dict[prefix + new] = state_dict.pop(prefix + old)


def as_final(final: Union[None, str, torch.Tensor, Final], num_states: int, dtype: torch.dtype) -> Optional[Final]:
    """``final`` (``None``, ``"last"``, ``"learn"``, ``(K,)`` log weights or a :class:`Final`) as a ``Final`` or ``None``."""
    if final is None:
        return None
    if isinstance(final, str):
        if final == "learn":
            return LearnedFinal.uniform(num_states, dtype)
        if final != "last":
            raise HMMTypeError(f"final must be None, 'last', a (K,) log-weight tensor or a Final; got {final!r} "
                               f"(or 'learn': end probabilities learned by EM)")
        return Final.last(num_states, dtype)
    if isinstance(final, torch.Tensor):
        final = Final(final.to(dtype) if final.is_floating_point() else final)
    if not isinstance(final, Final):
        raise HMMTypeError(f"final must be None, 'last', a (K,) log-weight tensor or a Final; got {type(final).__name__}")
    if final.num_states != num_states:
        raise HMMDimensionError(f"final must be (K,) with K == {num_states}; got {tuple(final.log_weights.shape)}",
                                expected_shape=(num_states,), actual_shape=final.log_weights.shape)
    return final.to(dtype)


def check_probs(p: torch.Tensor, name: str, shape: tuple) -> torch.Tensor:
    """``p`` as a float tensor of ``shape`` whose rows are probabilities summing to 1 (:func:`check_stochastic`)."""
    p = torch.as_tensor(p)
    if tuple(p.shape) != shape:
        raise HMMDimensionError(f"{name} must have shape {shape}; got {tuple(p.shape)}", expected_shape=shape, actual_shape=p.shape)
    return check_stochastic(p if p.dtype.is_floating_point else p.double(), name)
