"""HMM with Gaussian-mixture emissions (GMM-HMM), with optional mixture splitting in ``fit``."""

from __future__ import annotations

from typing import Iterable, List, Optional, Union

import torch

from ..emissions.mixture import GaussianMixture
from ..errors import HMMValueError
from .hmm import HMM, FinalSpec, TransitionSpec


class MixtureGaussianHMM(HMM):
    """``HMM`` whose states emit through a ``GaussianMixture`` of ``num_mixtures`` components.

    Args:
        num_states, num_mixtures, dim: ``K``, ``M``, ``D``.
        covariance_type: ``"diag"``, ``"full"``, ``"spherical"`` or ``"tied"`` (one full
            covariance per state, shared by its components), as hmmlearn's ``GMMHMM``.
        transitions, init_probs, final: as for :class:`HMM` (``init_probs`` may be an ``Initial``).
        weights, means, covars: optional mixture parameters ``(K, M)``, ``(K, M, D)`` and
            covars diag ``(K, M, D)``, full ``(K, M, D, D)``, spherical ``(K, M)``, tied
            ``(K, D, D)``; without them ``fit`` initialises by k-means.
        **mixture_kwargs: priors and ``min_covar`` of :class:`GaussianMixture`.
    """

    def __init__(
        self,
        num_states: int,
        num_mixtures: int,
        dim: int,
        covariance_type: str = "diag",
        transitions: TransitionSpec = "ergodic",
        init_probs: Optional[torch.Tensor] = None,
        weights: Optional[torch.Tensor] = None,
        means: Optional[torch.Tensor] = None,
        covars: Optional[torch.Tensor] = None,
        dtype: torch.dtype = torch.float32,
        final: FinalSpec = None,
        **mixture_kwargs,
    ) -> None:
        emission = GaussianMixture(num_states, num_mixtures, dim, covariance_type, weights=weights, means=means,
                                   covars=covars, dtype=dtype, **mixture_kwargs)
        super().__init__(emission, transitions, init_probs, final)

    @property
    def num_mixtures(self) -> int:
        return self.emission.num_mixtures

    def fit(
        self,
        data,
        lengths: Optional[torch.Tensor] = None,
        max_iter: int = 100,
        tol: float = 1e-4,
        verbose: bool = True,
        frozen: Iterable[str] = (),
        initialize: Union[bool, str, None] = None,
        generator: Optional[torch.Generator] = None,
        splits: int = 0,
    ) -> List[float]:
        """EM as :meth:`HMM.fit`, with ``splits`` rounds of mixture splitting.

        With ``splits = s``, EM runs to convergence (or ``max_iter``), then every component is
        split in two along its largest-variance direction and EM runs again, ``s`` times, so
        the model ends with ``num_mixtures * 2**s`` components (the HTK-style mixture-up
        recipe). Returns the log-likelihood history of all rounds concatenated. Splitting
        creates new parameters: rebuild any optimiser afterwards.
        """
        if not isinstance(splits, int) or isinstance(splits, bool) or splits < 0:
            raise HMMValueError(f"splits must be a non-negative int; got {splits!r}")
        history: List[float] = []
        for round_ in range(splits + 1):
            if round_ > 0:
                self.emission.split(generator=generator)
            history += super().fit(data, lengths, max_iter=max_iter, tol=tol, verbose=verbose, frozen=frozen,
                                   initialize=initialize if round_ == 0 else False, generator=generator)
        return history
