"""hmmlearn's calls on :class:`~pytorch_hmm.HMM`: ``score``, ``score_samples``, ``predict``,
``predict_proba``, ``n_parameters``, ``aic``, ``bic`` and ``get_stationary_distribution``, and ``fit(X, lengths)``.

They take what hmmlearn takes: ``X`` the sequences concatenated along the first axis
(``(N, D)`` features, or ``(N,)`` / ``(N, 1)`` integer symbols for a ``Categorical`` emission),
as a numpy array, a list or a tensor, and ``lengths`` the length of each sequence (default: one
sequence of all ``N`` frames). Results are torch tensors over the concatenated frames
(``.numpy()`` gives hmmlearn's arrays) and Python floats; nothing needs ``torch.no_grad()``.

``n_parameters`` counts free parameters as hmmlearn does for a fully fitted model: ``K - 1``
start probabilities, ``K - 1`` per row of transitions (for banded or sparse transitions: the
allowed moves of a row less one), and the emission's (Gaussian: ``K D`` means plus ``K D``
diagonal, ``K D (D + 1) / 2`` full, ``K`` spherical or ``D (D + 1) / 2`` tied covariances;
Gaussian mixture: ``K (M - 1)`` weights, ``K M D`` means, covariances per component, or ``K D (D + 1) / 2``
tied (one matrix per state); Categorical:
``K (S - 1)``). hmmlearn 0.3's ``GMMHMM`` counts ``M - 1`` weights in all, though each state
has its own: its ``aic``/``bic`` are lower by ``(K - 1) (M - 1)`` times 2 / ``log N``.
Viterbi paths with exactly equal scores may be broken differently from hmmlearn.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import HMMTypeError, HMMValueError
from ..validation import check_stochastic

__all__ = ["HmmlearnMethods"]


class HmmlearnMethods:
    """Mixin of :class:`~pytorch_hmm.HMM` (module docstring)."""

    # --- hmmlearn's parameter attributes: numpy copies to read; assigning validates and replaces
    # the component or emission parameter (as the constructor would: rebuild any optimiser) ---

    @property
    def startprob_(self) -> np.ndarray:
        """``(K,)`` start probabilities."""
        return _numpy(self.init_probs)

    @startprob_.setter
    def startprob_(self, value) -> None:
        from ..transitions.components import Initial

        probs = check_stochastic(_as_model_tensor(self, value), "startprob_")
        self.initial = Initial.from_probs(probs, self.initial.prior).to(device=probs.device)  # the prior stays

    @property
    def transmat_(self) -> np.ndarray:
        """``(K, K)`` transition probabilities (dense, also for banded and sparse models)."""
        return _numpy(self.transmat)

    @transmat_.setter
    def transmat_(self, value) -> None:
        from ..transitions.components import DenseTransitions

        if type(self.transition) is not DenseTransitions:
            raise HMMTypeError(f"transmat_ can be assigned for dense (ergodic) transitions only; this model's are "
                               f"{type(self.transition).__name__}: build the model with transitions=...")
        self.transition = DenseTransitions.from_probs(check_stochastic(_as_model_tensor(self, value), "transmat_"),
                                                      prior=self.transition.prior)  # the prior stays

    @property
    def startprob_prior(self):
        """Dirichlet prior of the start probabilities (``(K,)`` numpy; ``1.0`` without one, which is
        maximum likelihood); assign a number or an array to set it, ``None`` to remove it."""
        return 1.0 if self.initial.prior is None else _numpy(self.initial.prior)

    @startprob_prior.setter
    def startprob_prior(self, value) -> None:
        self.initial.set_prior(None if value is None else _as_model_tensor(self, value))

    @property
    def transmat_prior(self):
        """Dirichlet prior of each transition row, in the component's ``logits`` shape (numpy; ``1.0``
        without one); assign a number or an array to set it, ``None`` to remove it."""
        prior = getattr(self.transition, "prior", None)
        return 1.0 if prior is None else _numpy(prior)

    @transmat_prior.setter
    def transmat_prior(self, value) -> None:
        if not hasattr(self.transition, "set_prior"):
            raise HMMTypeError(f"transmat_prior needs learned transitions (dense, banded or sparse tables); "
                               f"this model's are {type(self.transition).__name__}")
        self.transition.set_prior(None if value is None else _as_model_tensor(self, value))

    means_ = property(lambda self: _emission_get(self, "means", "means_"),
                      lambda self, v: _emission_set(self, "means", "means_", v), doc="Emission means (the emission's ``means``).")
    covars_ = property(lambda self: _emission_get(self, "covars", "covars_"),
                       lambda self, v: _emission_set(self, "covars", "covars_", v),
                       doc="Emission covariances in the covariance type's own shape (hmmlearn's ``_covars_``).")
    weights_ = property(lambda self: _emission_get(self, "weights", "weights_"),
                        lambda self, v: _emission_set(self, "weights", "weights_", v), doc="``(K, M)`` mixture weights.")
    emissionprob_ = property(lambda self: _emission_get(self, "probs", "emissionprob_"),
                             lambda self, v: _emission_set(self, "probs", "emissionprob_", v),
                             doc="``(K, S)`` symbol probabilities of a Categorical emission.")

    def score(self, X, lengths: Optional[Sequence[int]] = None) -> float:
        """Total log-likelihood of the sequences (hmmlearn's ``score``)."""
        return self._total(*self._concatenated(X, lengths))

    def score_samples(self, X, lengths: Optional[Sequence[int]] = None) -> Tuple[float, torch.Tensor]:
        """``(log-likelihood, posteriors (N, K))`` (hmmlearn's ``score_samples``), from one forward-backward pass."""
        from ..kernel import forward_backward

        x, lens = self._concatenated(X, lengths)
        with torch.no_grad():
            log_z, gamma = forward_backward(self.log_emissions(x, lens), self._chain(), self.log_init, lens, self.log_final)
        return float(log_z.double().sum()), _unpad(gamma, lens)

    def predict(self, X, lengths: Optional[Sequence[int]] = None) -> torch.Tensor:
        """``(N,)`` int64 Viterbi states of every frame (hmmlearn's ``predict``)."""
        x, lens = self._concatenated(X, lengths)
        return _unpad(self.viterbi(x, lens)[0], lens)

    def predict_proba(self, X, lengths: Optional[Sequence[int]] = None) -> torch.Tensor:
        """``(N, K)`` state posteriors of every frame (hmmlearn's ``predict_proba``)."""
        x, lens = self._concatenated(X, lengths)
        return _unpad(self.posteriors(x, lens), lens)

    def get_stationary_distribution(self) -> np.ndarray:
        """``(K,)`` stationary distribution as a numpy array (hmmlearn's name for :meth:`stationary_distribution`)."""
        return _numpy(self.stationary_distribution())

    def n_parameters(self) -> int:
        """Free parameters, counted as hmmlearn counts them (module docstring)."""
        k = self.num_states
        allowed = torch.isfinite(self.transition.dense_log_probs().detach()).sum(-1)
        ends = 0  # learned end probabilities: one free parameter per state that may both end and go on
        if getattr(self.final, "learned", False):
            ends = int(torch.isfinite(self.final.log_probs.detach()).all(-1).sum())
        return int(k - 1 + (allowed - 1).clamp(min=0).sum()) + ends + _emission_parameters(self.emission)

    def aic(self, X, lengths: Optional[Sequence[int]] = None) -> float:
        """Akaike information criterion ``-2 log L + 2 p`` (hmmlearn's ``aic``)."""
        return -2.0 * self.score(X, lengths) + 2.0 * self.n_parameters()

    def bic(self, X, lengths: Optional[Sequence[int]] = None) -> float:
        """Bayesian information criterion ``-2 log L + p log N`` over ``N`` frames (hmmlearn's ``bic``)."""
        x, lens = self._concatenated(X, lengths)
        return -2.0 * self._total(x, lens) + self.n_parameters() * math.log(int(lens.sum()))

    def _total(self, x: torch.Tensor, lengths: torch.Tensor) -> float:
        """Summed log-likelihood of a padded batch, without autograd."""
        with torch.no_grad():
            return float(self(x, lengths).double().sum())

    def _is_concatenated(self, data) -> bool:
        """hmmlearn's layout: an array or tensor with one axis more than a frame (``(N, D)``
        features, ``(N,)`` symbols, or hmmlearn's ``(N, 1)`` symbols as a numpy array); padded
        batches have two."""
        from ..emissions import Categorical

        if not isinstance(data, (np.ndarray, torch.Tensor)):
            return False
        if isinstance(self.emission, Categorical):
            return data.ndim == 1 or (isinstance(data, np.ndarray) and data.ndim == 2 and data.shape[1] == 1)
        return data.ndim == 2

    def _concatenated(self, X, lengths) -> Tuple[torch.Tensor, torch.Tensor]:
        """hmmlearn's ``(X, lengths)`` as a padded ``(B, T, ...)`` tensor and ``(B,)`` lengths."""
        from ..emissions import Categorical

        symbols = isinstance(self.emission, Categorical)
        if isinstance(X, (str, bytes)) or not isinstance(X, (torch.Tensor, np.ndarray, list, tuple)):
            raise HMMTypeError(f"X must be an array, a list or a tensor of concatenated frames; got {type(X).__name__}")
        x = X if isinstance(X, torch.Tensor) else torch.as_tensor(np.asarray(X))
        if symbols and x.ndim == 2 and x.shape[1] == 1:
            x = x[:, 0]  # hmmlearn's CategoricalHMM takes (N, 1)
        frame_ndim = 0 if symbols else 1
        if x.ndim != frame_ndim + 1:
            want = "(N,) or (N, 1) integer symbols" if symbols else "(N, D) frames"
            raise HMMValueError(f"X must be {want}, the sequences concatenated as hmmlearn takes them; "
                                f"got shape {tuple(x.shape)}")
        if not symbols and not x.is_complex():
            x = x.to(self._dtype)  # float64 arrays into a float32 model, integer features as floats
        n = x.shape[0]
        lens = [n] if lengths is None else list(np.asarray(lengths).reshape(-1).tolist())
        if not lens or any(not isinstance(v, int) or v < 1 for v in lens) or sum(lens) != n:
            raise HMMValueError(f"lengths must be positive integers summing to the {n} frames of X; got {lengths!r}")
        x = x.to(self._device) if self._device is not None else x
        padded = torch.nn.utils.rnn.pad_sequence(list(torch.split(x, lens)), batch_first=True)
        return padded, torch.tensor(lens, device=padded.device)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def _as_model_tensor(model, value) -> torch.Tensor:
    t = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
    return t.to(dtype=model._dtype, device=model._device)


def _emission_get(model, name: str, attribute: str) -> np.ndarray:
    if not hasattr(type(model.emission), name):
        raise HMMTypeError(f"{attribute} needs an emission with {name}; this model's is {type(model.emission).__name__}")
    return _numpy(getattr(model.emission, name))


def _emission_set(model, name: str, attribute: str, value) -> None:
    if not hasattr(type(model.emission), name):
        raise HMMTypeError(f"{attribute} needs an emission with {name}; this model's is {type(model.emission).__name__}")
    setattr(model.emission, name, _as_model_tensor(model, value))


def _unpad(values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``(B, T, ...)`` -> the valid frames concatenated ``(N, ...)``."""
    keep = torch.arange(values.shape[1], device=values.device)[None, :] < lengths[:, None]
    return values[keep]


def _emission_parameters(emission) -> int:
    from ..emissions import Categorical, Gaussian, GaussianMixture

    k = emission.num_states
    if isinstance(emission, Categorical):
        return k * (emission.num_symbols - 1)
    if isinstance(emission, (Gaussian, GaussianMixture)):
        d, ct = emission.dim, emission.covariance_type
        m = getattr(emission, "num_mixtures", 1)
        mixture = isinstance(emission, GaussianMixture)
        per = {"diag": d, "full": d * (d + 1) // 2, "spherical": 1, "tied": 0}[ct]
        # tied: one matrix for a Gaussian, one per state for a mixture (as hmmlearn's GMMHMM)
        covars = k * m * per if ct != "tied" else (d * (d + 1) // 2) * (k if mixture else 1)
        weights = k * (m - 1) if mixture else 0
        return weights + k * m * d + covars
    raise HMMTypeError(f"n_parameters counts Gaussian, GaussianMixture and Categorical emissions; got {type(emission).__name__}")
