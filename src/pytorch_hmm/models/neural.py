"""Neural HMMs for attention-free TTS alignment (Mehta et al., ICASSP 2022) on the shared kernel.

A text of ``N`` tokens becomes a left-to-right chain of ``K = N * states_per_token`` states
without skips. Networks give every frame ``t`` and state ``k`` a diagonal Gaussian emission and
a probability of staying; the log-likelihood is the kernel's exact forward algorithm
(:func:`~pytorch_hmm.kernel.log_partition`) over a time-varying ``Banded`` structure, started in
the first state and ended in each text's last state, so its gradient is the backward algorithm
and memory stays ``O(B T K)``.

The per-frame outputs factorise into a frame part (from the autoregressive decoder state
``h_t``: an LSTM over a prenet of the previous frame) and a state part (from the text
encoder's state vector ``e_k``)::

    mean[t, k] = m(h_t) + n(e_k)
    std[t, k]  = g(h_t) * s(e_k),   g = 1 + softplus(.) >= 1,  s = std_floor + softplus(.) >= std_floor
    stay[t, k] = sigmoid(u(h_t) + v(e_k))

so the ``(B, T, K)`` log-densities are three matrix products and never an ``(B, T, K, D)``
tensor. That Gaussian is the default emission, a swappable component (:mod:`.neural_emission`):
the networks give raw frame and state outputs, and the emission turns them into log-densities
and samples. ``autoregressive=False`` drops ``h_t`` (``m = u = 0``, ``g = 1``): an aligner
whose emissions and durations come from the text alone. :class:`ContextualNeuralHMM` adds a context
vector per utterance (speaker, prosody) to the encoder states and the decoder input.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import HMMDimensionError, HMMDtypeError, HMMTypeError, HMMValueError
from ..kernel import log_partition, posteriors, viterbi
from ..transitions import Banded
from ..validation import check_count, check_lengths, check_number
from .neural_emission import FactorisedGaussian, FrameStateEmission

__all__ = ["NeuralHMM", "ContextualNeuralHMM"]


class NeuralHMM(nn.Module):
    """Left-to-right neural HMM over the states of a token sequence.

    Args:
        num_tokens: size of the token (phone) vocabulary.
        feature_dim: ``D``, e.g. 80 log-mel bands.
        states_per_token: states of each token's chain (2 in Mehta et al.).
        hidden_dim: width of the encoder, prenet and decoder.
        autoregressive: condition each frame on the previous one (decoder LSTM); ``False`` gives
            a non-autoregressive aligner.
        std_floor: the smallest standard deviation of the default emission.
        emission: a :class:`~pytorch_hmm.models.neural_emission.FrameStateEmission` over
            ``feature_dim`` dimensions; default :class:`~pytorch_hmm.models.neural_emission.FactorisedGaussian`
            with ``std_floor``.
        context_dim: size of the per-utterance context vector (:class:`ContextualNeuralHMM`), 0 = none.
        prenet_dropout: dropout of the prenet in training mode (Mehta et al.: 0.5), so that the
            decoder cannot explain each frame from the last one alone and the text keeps its say.
    """

    def __init__(self, num_tokens: int, feature_dim: int, states_per_token: int = 2, hidden_dim: int = 128,
                 autoregressive: bool = True, std_floor: float = 1e-2, context_dim: int = 0,
                 prenet_dropout: float = 0.5, emission: Optional[FrameStateEmission] = None) -> None:
        super().__init__()
        self.num_tokens = check_count(num_tokens, "num_tokens")
        self.feature_dim = check_count(feature_dim, "feature_dim")
        self.states_per_token = check_count(states_per_token, "states_per_token")
        self.hidden_dim = check_count(hidden_dim, "hidden_dim", minimum=2)
        self.std_floor = check_number(std_floor, "std_floor", positive=True)
        self.context_dim = check_count(context_dim, "context_dim", minimum=0)
        if not isinstance(autoregressive, bool):
            raise HMMTypeError(f"autoregressive must be a bool; got {type(autoregressive).__name__}")
        self.autoregressive = autoregressive
        self.prenet_dropout = check_number(prenet_dropout, "prenet_dropout", minimum=0.0, below=1.0)
        if emission is None:
            emission = FactorisedGaussian(self.feature_dim, self.std_floor)
        if not isinstance(emission, FrameStateEmission):
            raise HMMTypeError(f"emission must be a FrameStateEmission; got {type(emission).__name__}")
        if getattr(emission, "feature_dim", None) != self.feature_dim:
            raise HMMValueError(f"emission.feature_dim must equal feature_dim = {self.feature_dim}; "
                                f"got {getattr(emission, 'feature_dim', None)}")
        self.emission = emission
        h, d = self.hidden_dim, self.feature_dim
        self.embedding = nn.Embedding(num_tokens, h)
        self.encoder = nn.LSTM(h, h // 2, batch_first=True, bidirectional=True)
        self.to_states = nn.Linear(2 * (h // 2), states_per_token * h)
        self.state_out = nn.Linear(h, emission.state_dim + 1)  # the emission's state part, v(e_k)
        if autoregressive:
            self.prenet = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Dropout(self.prenet_dropout),
                                        nn.Linear(h, h), nn.ReLU(), nn.Dropout(self.prenet_dropout))
            self.decoder = nn.LSTM(h, h, batch_first=True)
            self.frame_out = nn.Linear(h, emission.frame_dim + 1)  # the emission's frame part, u(h_t)
        if context_dim:
            self.context_to_states = nn.Linear(context_dim, h)
            if autoregressive:
                self.context_to_frames = nn.Linear(context_dim, h)

    # --- inputs ---

    def _check_tokens(self, tokens, token_lengths) -> Tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2:
            shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
            raise HMMDimensionError(f"tokens must be a (B, N) integer tensor; got {shape}", expected_shape=("B", "N"),
                                    actual_shape=tokens.shape if isinstance(tokens, torch.Tensor) else None)
        if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
            raise HMMDtypeError(f"tokens must have an integer dtype; got {tokens.dtype}")
        b, n = tokens.shape
        lens = check_lengths(token_lengths, "token_lengths", b, n, tokens.device, limit_name="N")
        valid = torch.arange(n, device=tokens.device) < lens[:, None]
        if bool(((tokens < 0) | (tokens >= self.num_tokens))[valid].any()):
            raise HMMValueError(f"tokens must be ids in [0, num_tokens) = [0, {self.num_tokens}); got values in "
                                f"[{int(tokens[valid].min())}, {int(tokens[valid].max())}]")
        return tokens.masked_fill(~valid, 0).long(), lens

    def _check_features(self, features, feature_lengths, batch: int) -> Tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(features, torch.Tensor) or features.ndim != 3 or features.shape[-1] != self.feature_dim:
            shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise HMMDimensionError(f"features must be (B, T, D) with D == {self.feature_dim}; got {shape}",
                                    expected_shape=("B", "T", self.feature_dim),
                                    actual_shape=features.shape if isinstance(features, torch.Tensor) else None)
        if features.shape[0] != batch:
            raise HMMDimensionError(f"features must have the batch size of tokens, B == {batch}; got {tuple(features.shape)}",
                                    expected_shape=(batch, "T", self.feature_dim), actual_shape=features.shape)
        if features.dtype != self.embedding.weight.dtype:
            raise HMMDtypeError(f"features must have the model's dtype ({self.embedding.weight.dtype}); got {features.dtype}")
        lens = check_lengths(feature_lengths, "feature_lengths", batch, features.shape[1], features.device, limit_name="T")
        mask = torch.arange(features.shape[1], device=features.device) < lens[:, None]
        if not bool(torch.isfinite(features[mask]).all()):
            raise HMMValueError("features must be finite at valid frames; got NaN or infinite values")
        return features.masked_fill(~mask[:, :, None], 0.0), lens

    def _check_context(self, context, batch: int) -> Optional[torch.Tensor]:
        if not self.context_dim:
            if context is not None:
                raise HMMValueError("context is only for a model built with context_dim > 0 (ContextualNeuralHMM)")
            return None
        if not isinstance(context, torch.Tensor) or tuple(context.shape) != (batch, self.context_dim):
            shape = tuple(context.shape) if isinstance(context, torch.Tensor) else type(context).__name__
            raise HMMDimensionError(f"context must be (B, C) == ({batch}, {self.context_dim}); got {shape}",
                                    expected_shape=(batch, self.context_dim),
                                    actual_shape=context.shape if isinstance(context, torch.Tensor) else None)
        return context.to(self.embedding.weight.dtype)

    # --- networks ---

    def encode(self, tokens: torch.Tensor, token_lengths: torch.Tensor, context: Optional[torch.Tensor] = None):
        """State outputs ``(emission part (B, K, S), stay logit v (B, K))`` and the number of states ``(B,)``."""
        x = self.embedding(tokens)
        packed = nn.utils.rnn.pack_padded_sequence(x, token_lengths.cpu(), batch_first=True, enforce_sorted=False)
        enc, _ = self.encoder(packed)
        enc, _ = nn.utils.rnn.pad_packed_sequence(enc, batch_first=True, total_length=tokens.shape[1])
        states = self.to_states(enc).view(tokens.shape[0], -1, self.hidden_dim)  # (B, K, H), token-major
        if context is not None:
            states = states + self.context_to_states(context)[:, None]
        out = self.state_out(torch.tanh(states))
        return out[..., :-1], out[..., -1], token_lengths * self.states_per_token

    def decode(self, previous: torch.Tensor, context: Optional[torch.Tensor] = None, state=None):
        """Frame outputs from the previous frames ``(B, T, D)``: ``(emission part (B, T, F), stay logit u (B, T))``
        and the decoder's LSTM state (teacher forcing; one frame at a time when generating)."""
        x = self.prenet(previous)
        if context is not None:
            x = x + self.context_to_frames(context)[:, None]
        h, state = self.decoder(x, state)
        out = self.frame_out(h)
        return out[..., :-1], out[..., -1], state

    def potentials(self, tokens, token_lengths, features, feature_lengths, context=None):
        """The kernel's inputs: ``(log_emissions (B, T, K), Banded (B, T-1, K, 2), log_init (B, K), log_final (B, K),
        feature_lengths (B,))``."""
        tokens, token_lengths = self._check_tokens(tokens, token_lengths)
        features, feature_lengths = self._check_features(features, feature_lengths, tokens.shape[0])
        context = self._check_context(context, tokens.shape[0])
        state_part, v, num_states = self.encode(tokens, token_lengths, context)
        short = feature_lengths < num_states
        if bool(short.any()):
            b = int(short.nonzero()[0, 0])
            raise HMMValueError(
                f"feature_lengths must give every state at least one frame: item {b} has {int(feature_lengths[b])} "
                f"frames for {int(token_lengths[b])} tokens x {self.states_per_token} states = {int(num_states[b])} states")
        bsz, t, _ = features.shape
        k = state_part.shape[1]
        if self.autoregressive:
            previous = torch.cat([torch.zeros_like(features[:, :1]), features[:, :-1]], 1)  # a zero "go" frame first
            frame_part, u, _ = self.decode(previous, context)
        else:
            frame_part, u = None, features.new_zeros(bsz, t)
        log_emissions = self.emission.log_density(features, frame_part, state_part)
        stay = u[:, :-1, None] + v[:, None, :]  # (B, T-1, K): the move from frame t to t + 1
        trans = Banded(torch.stack([F.logsigmoid(stay), F.logsigmoid(-stay)], -1))
        log_init = torch.full((bsz, k), -math.inf, dtype=features.dtype, device=features.device)
        log_init[:, 0] = 0.0
        log_final = torch.full((bsz, k), -math.inf, dtype=features.dtype, device=features.device)
        log_final[torch.arange(bsz), num_states - 1] = 0.0
        return log_emissions, trans, log_init, log_final, feature_lengths

    def forward(self, tokens, token_lengths, features, feature_lengths, context=None) -> torch.Tensor:
        """``(B,)`` log p(features | tokens): the forward algorithm over every monotone alignment
        (``-model(...).mean()`` is a training loss)."""
        e, trans, init, final, lens = self.potentials(tokens, token_lengths, features, feature_lengths, context)
        return log_partition(e, trans, init, lens, final)

    @torch.no_grad()
    def align(self, tokens, token_lengths, features, feature_lengths, context=None):
        """``(durations (B, N) frames per token (Viterbi), posteriors (B, T, K) state posteriors)``."""
        e, trans, init, final, lens = self.potentials(tokens, token_lengths, features, feature_lengths, context)
        paths, _ = viterbi(e, trans, init, lens, final)
        k = e.shape[-1]
        counts = torch.zeros(e.shape[0], k + 1, dtype=torch.long, device=e.device)
        counts.scatter_add_(1, torch.where(paths >= 0, paths, k), torch.ones_like(paths))
        durations = counts[:, :k].view(e.shape[0], -1, self.states_per_token).sum(-1)
        return durations, posteriors(e, trans, init, lens, final)

    @torch.no_grad()
    def generate(self, tokens, token_lengths, context=None, *, temperature: float = 0.667,
                 duration_threshold: Optional[float] = 0.5, max_frames: int = 1000,
                 generator: Optional[torch.Generator] = None, return_durations: bool = False):
        """Synthesise features for ``tokens``: ``(features (B, T, D), lengths (B,))`` (and ``durations (B, K)``).

        Each state lasts at least one frame. It is left where the probability of having stayed so
        long (the product of its stay probabilities) falls below ``duration_threshold`` (lower =
        longer states: the speaking-rate knob), or by sampling when ``duration_threshold`` is
        ``None``. Frames are the emission's samples at ``temperature`` (the default emission: ``mean +
        temperature * std * noise``; 0: the means). A stream ends when it
        leaves its last state, or after ``max_frames`` frames (its length is then ``max_frames``).
        """
        tokens, token_lengths = self._check_tokens(tokens, token_lengths)
        context = self._check_context(context, tokens.shape[0])
        temperature = check_number(temperature, "temperature", minimum=0.0)
        if duration_threshold is not None:
            duration_threshold = check_number(duration_threshold, "duration_threshold", positive=True, below=1.0)
        max_frames = check_count(max_frames, "max_frames")
        state_part, v, num_states = self.encode(tokens, token_lengths, context)
        bsz, k, _ = state_part.shape
        d = self.feature_dim
        dev, dtype = state_part.device, state_part.dtype
        rows = torch.arange(bsz, device=dev)
        state = torch.zeros(bsz, dtype=torch.long, device=dev)
        survival = torch.ones(bsz, dtype=dtype, device=dev)  # P(stay this long) in the current state
        done = torch.zeros(bsz, dtype=torch.bool, device=dev)
        lengths = torch.full((bsz,), max_frames, dtype=torch.long, device=dev)
        durations = torch.zeros(bsz, k, dtype=torch.long, device=dev)
        frames = []
        previous = torch.zeros(bsz, 1, d, dtype=dtype, device=dev)
        decoder_state = None
        frame_part, u = None, survival.new_zeros(bsz)  # without the decoder: no frame part, u = 0
        for t in range(max_frames):  # sampling: each frame depends on the last (no DP here)
            if self.autoregressive:
                frame_part, u, decoder_state = self.decode(previous, context, decoder_state)
                frame_part, u = frame_part[:, 0], u[:, 0]
            x = self.emission.sample(frame_part, state_part[rows, state], temperature, generator)
            x = torch.where(done[:, None], 0.0, x)
            frames.append(x)
            previous = x[:, None]
            durations[rows, state] += (~done).long()
            stay = torch.sigmoid(u + v[rows, state])
            survival = survival * stay
            if duration_threshold is None:
                leave = torch.rand(bsz, dtype=dtype, device=dev, generator=generator) >= stay
            else:
                leave = survival < duration_threshold
            finished = leave & (state == num_states - 1) & ~done
            lengths = torch.where(finished, t + 1, lengths)
            done = done | finished
            moving = leave & ~done
            state = torch.where(moving, state + 1, state)
            survival = torch.where(moving, torch.ones_like(survival), survival)
            if bool(done.all()):
                break
        features = torch.stack(frames, 1)
        features = features.masked_fill(~(torch.arange(features.shape[1], device=dev) < lengths[:, None])[:, :, None], 0.0)
        return (features, lengths, durations) if return_durations else (features, lengths)


class ContextualNeuralHMM(NeuralHMM):
    """:class:`NeuralHMM` conditioned on a context vector per utterance (speaker, prosody):
    ``context`` ``(B, context_dim)`` is added (through a linear map) to the encoder's states and
    the decoder's input. Pass it as the last argument of ``forward``, ``align`` and ``generate``."""

    def __init__(self, num_tokens: int, feature_dim: int, context_dim: int, **kwargs) -> None:
        if isinstance(context_dim, bool) or not isinstance(context_dim, int) or context_dim < 1:
            raise HMMValueError(f"context_dim must be a positive int; got {context_dim!r}")
        super().__init__(num_tokens, feature_dim, context_dim=context_dim, **kwargs)

