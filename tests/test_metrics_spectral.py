"""Mel-cepstral distortion and mel_cepstrum: closed forms, a per-frame numpy reference, librosa's
DTW as the reference path, hypothesis properties, doctests, one test per error message."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import pytorch_hmm.metrics._inputs as inputs_module
import pytorch_hmm.metrics.spectral as spectral_module
from pytorch_hmm.errors import HMMDimensionError, HMMDtypeError, HMMTypeError, HMMValueError
from pytorch_hmm.metrics.spectral import all_pass_alpha, mel_cepstral_distortion, mel_cepstrum

K = 10.0 / math.log(10.0) * math.sqrt(2.0)


def reference_mcd(ref: np.ndarray, syn: np.ndarray, exclude_c0: bool = True) -> float:
    """Frame-by-frame loop of the Kominek & Black formula."""
    start = 1 if exclude_c0 else 0
    frames = [
        10.0 / math.log(10.0) * math.sqrt(2.0 * sum((r[d] - s[d]) ** 2 for d in range(start, len(r))))
        for r, s in zip(ref, syn)
    ]
    return sum(frames) / len(frames)


def test_doctests():
    for module in (spectral_module, inputs_module):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0
    assert doctest.testmod(spectral_module).attempted > 0


def test_identical_input_is_zero():
    x = torch.randn(2, 7, 5, dtype=torch.float64)
    assert torch.equal(mel_cepstral_distortion(x, x), torch.zeros(2, dtype=torch.float64))
    assert torch.equal(mel_cepstral_distortion(x, x, align="dtw"), torch.zeros(2, dtype=torch.float64))


@pytest.mark.parametrize("column", [1, 3])
def test_constant_offset_in_one_coefficient(column):
    ref = torch.randn(9, 5, dtype=torch.float64)
    syn = ref.clone()
    syn[:, column] += 0.3
    assert float(mel_cepstral_distortion(ref, syn)) == pytest.approx(K * 0.3, rel=1e-12)


def test_c0_excluded_or_included():
    ref = torch.zeros(6, 4, dtype=torch.float64)
    syn = ref.clone()
    syn[:, 0] += 2.0
    assert float(mel_cepstral_distortion(ref, syn)) == 0.0
    assert float(mel_cepstral_distortion(ref, syn, exclude_c0=False)) == pytest.approx(K * 2.0)


@settings(max_examples=30)
@given(
    arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(2, 5)), elements=st.floats(-5, 5)),
    st.integers(0, 2**31 - 1),
    st.booleans(),
)
def test_matches_reference_symmetric_nonnegative(ref, seed, exclude_c0):
    syn = ref + np.random.default_rng(seed).normal(size=ref.shape)
    got = float(mel_cepstral_distortion(ref, syn, exclude_c0=exclude_c0))
    back = float(mel_cepstral_distortion(syn, ref, exclude_c0=exclude_c0))
    assert got == pytest.approx(reference_mcd(ref, syn, exclude_c0), rel=1e-10, abs=1e-12)
    assert got >= 0.0 and got == pytest.approx(back, rel=1e-12, abs=1e-12)


@settings(max_examples=20)
@given(st.integers(1, 8), st.integers(1, 3), st.integers(0, 2**31 - 1))
def test_dtw_time_stretched_copy_is_zero(frames, repeat, seed):
    ref = torch.from_numpy(np.random.default_rng(seed).normal(size=(frames, 4)))
    stretched = ref.repeat_interleave(repeat + 1, dim=0)
    assert float(mel_cepstral_distortion(ref, stretched, align="dtw")) == 0.0
    assert float(mel_cepstral_distortion(stretched, ref, align="dtw")) == 0.0


def test_dtw_matches_librosa_path():
    librosa = pytest.importorskip("librosa")
    rng = np.random.default_rng(3)
    ref, syn = rng.normal(size=(11, 6)), rng.normal(size=(8, 6))
    _, wp = librosa.sequence.dtw(X=ref[:, 1:].T, Y=syn[:, 1:].T, metric="euclidean")
    expected = np.mean([K * np.linalg.norm(ref[i, 1:] - syn[j, 1:]) for i, j in wp])
    assert float(mel_cepstral_distortion(ref, syn, align="dtw")) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("align", ["none", "dtw"])
def test_batch_equals_items_with_padding(align):
    rng = np.random.default_rng(0)
    lengths = [5, 3, 7]
    syn_lengths = lengths if align == "none" else [4, 6, 2]
    ref = np.full((3, 7, 4), np.nan)  # padding holds garbage
    syn = np.full((3, 8, 4), 1e9)
    items = []
    for b, (n, m) in enumerate(zip(lengths, syn_lengths)):
        ref[b, :n], syn[b, :m] = rng.normal(size=(n, 4)), rng.normal(size=(m, 4))
        items.append(float(mel_cepstral_distortion(ref[b, :n], syn[b, :m], align=align)))
    got = mel_cepstral_distortion(ref, syn, lengths, syn_lengths, align=align)
    assert got.shape == (3,) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), items, rtol=1e-12)


def test_numpy_equals_torch_and_unbatched_is_0d():
    rng = np.random.default_rng(1)
    ref, syn = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    a = mel_cepstral_distortion(ref, syn)
    b = mel_cepstral_distortion(torch.from_numpy(ref).float(), torch.from_numpy(syn).float())
    assert a.shape == () and a.dtype == torch.float64
    assert float(a) == pytest.approx(float(b), rel=1e-6)


def _impulse_wave(a: float, n: int = 4000, at: int = 2000) -> np.ndarray:
    x = np.zeros(n)
    x[at], x[at + 1] = 1.0, -a  # FIR 1 - a z^-1, log-amplitude log|1 - a e^{-jw}|
    return x


def test_plain_cepstrum_of_fir_has_closed_form():
    a = 0.5
    mc = mel_cepstrum(_impulse_wave(a), 16000, order=8, alpha=0.0, frame_length=512, hop_length=80)
    frame = mc[2000 // 80]  # the impulse sits at this frame's centre
    expected = [0.0] + [-(a**m) / m for m in range(1, 9)]  # log(1 - a z^-1) = -sum a^m z^-m / m
    np.testing.assert_allclose(frame.numpy(), expected, atol=2e-4)


def test_warped_cepstrum_reconstructs_log_amplitude():
    """Definition check: log|H(e^{jw})| = sum_m c~_m cos(m beta(w)), beta the all-pass phase."""
    a, alpha = 0.6, 0.42
    mc = mel_cepstrum(_impulse_wave(a), 16000, order=30, alpha=alpha, frame_length=512, hop_length=80)
    c = mc[2000 // 80].numpy()
    w = np.linspace(0.0, np.pi, 257)
    beta = w + 2 * np.arctan(alpha * np.sin(w) / (1 - alpha * np.cos(w)))
    model = np.cos(np.outer(beta, np.arange(31))) @ c
    truth = np.log(np.abs(1 - a * np.exp(-1j * w)))
    assert np.max(np.abs(model - truth)) < 5e-3


def test_mel_cepstrum_gain_changes_only_c0_and_signals_differ():
    rng = np.random.default_rng(0)
    sr = 16000
    t = np.arange(4000) / sr
    noise = rng.normal(size=4000)
    tone = np.sin(2 * np.pi * 440.0 * t) + 0.01 * noise
    mc = mel_cepstrum(noise, sr)
    assert mc.shape == (1 + 4000 // 80, 25) and mc.dtype == torch.float64
    louder = mel_cepstrum(2.5 * noise, sr)
    np.testing.assert_allclose((louder[:, 0] - mc[:, 0]).numpy(), math.log(2.5), atol=1e-9)
    assert float(mel_cepstral_distortion(mc, louder)) < 1e-8
    assert float(mel_cepstral_distortion(mc, mel_cepstrum(noise, sr))) == 0.0
    assert float(mel_cepstral_distortion(mc, mel_cepstrum(tone, sr))) > 5.0
    batch = mel_cepstrum(np.stack([noise, tone]), sr)
    np.testing.assert_allclose(batch[0].numpy(), mc.numpy(), atol=1e-10)


def test_all_pass_alpha_table():
    assert [all_pass_alpha(r) for r in (8000, 16000, 22050, 44100, 48000)] == [0.31, 0.42, 0.455, 0.544, 0.554]
    assert all_pass_alpha(11025) == 0.37 and all_pass_alpha(10400) == 0.35 and all_pass_alpha(96000) == 0.554


# --- one test per error message -------------------------------------------------------------


def test_error_unequal_lengths_without_alignment():
    with pytest.raises(HMMValueError, match=r"ref and syn must have the same number of frames at batch index 1; got 4 and 3"):
        mel_cepstral_distortion(torch.zeros(2, 5, 3), torch.zeros(2, 5, 3), [5, 4], [5, 3])
    with pytest.raises(HMMValueError, match=r"same number of frames; got 5 and 6 .*never truncated"):
        mel_cepstral_distortion(torch.zeros(5, 3), torch.zeros(6, 3))


def test_error_align_value():
    with pytest.raises(HMMValueError, match=r"align must be 'none' or 'dtw'; got 'fast'"):
        mel_cepstral_distortion(torch.zeros(5, 3), torch.zeros(5, 3), align="fast")


def test_error_rank():
    with pytest.raises(HMMDimensionError, match=r"ref must be \(T, D\) or \(B, T, D\); got shape \(5,\)"):
        mel_cepstral_distortion(torch.zeros(5), torch.zeros(5, 3))


def test_error_batched_mismatch():
    with pytest.raises(HMMDimensionError, match=r"ref and syn must both be batched or both unbatched"):
        mel_cepstral_distortion(torch.zeros(1, 5, 3), torch.zeros(5, 3))


def test_error_dimension_mismatch():
    with pytest.raises(HMMDimensionError, match=r"syn must have the same B and D as ref \(1, 5, 3\); got shape \(1, 5, 4\)"):
        mel_cepstral_distortion(torch.zeros(1, 5, 3), torch.zeros(1, 5, 4), align="dtw")


def test_error_empty():
    with pytest.raises(HMMDimensionError, match=r"ref must have at least one sequence, frame and coefficient"):
        mel_cepstral_distortion(torch.zeros(0, 3), torch.zeros(0, 3))


def test_error_dtype():
    with pytest.raises(HMMDtypeError, match=r"syn must have a real \(float or integer\) dtype; got torch.bool"):
        mel_cepstral_distortion(torch.zeros(5, 3), torch.zeros(5, 3, dtype=torch.bool))


def test_error_type():
    with pytest.raises(HMMTypeError, match=r"ref must be a torch.Tensor or a numpy array; got object"):
        mel_cepstral_distortion(object(), torch.zeros(5, 3))


def test_error_nan():
    syn = torch.zeros(5, 3)
    syn[2, 1] = float("nan")
    with pytest.raises(HMMValueError, match=r"syn must be finite \(at frames before its length\); found NaN"):
        mel_cepstral_distortion(torch.zeros(5, 3), syn)


def test_error_only_c0():
    with pytest.raises(HMMValueError, match=r"ref has only c0 .*at least 2 coefficients"):
        mel_cepstral_distortion(torch.zeros(5, 1), torch.zeros(5, 1))


def test_error_lengths_range():
    with pytest.raises(HMMValueError, match=r"ref_lengths must be in \[1, T\] = \[1, 5\]; got values in \[0, 5\]"):
        mel_cepstral_distortion(torch.zeros(2, 5, 3), torch.zeros(2, 5, 3), [0, 5], [0, 5])


def test_error_mel_cepstrum_arguments():
    wave = np.zeros(2000)
    with pytest.raises(HMMValueError, match=r"sample_rate must be a positive number of Hz; got -1"):
        mel_cepstrum(wave, -1)
    with pytest.raises(HMMValueError, match=r"alpha must be a number in \(-1, 1\); got 1.5"):
        mel_cepstrum(wave, 16000, alpha=1.5)
    with pytest.raises(HMMValueError, match=r"hop_length must be a positive int; got 0"):
        mel_cepstrum(wave, 16000, hop_length=0)
    with pytest.raises(HMMValueError, match=r"order must be an int in \[0, frame_length // 2\) = \[0, 256\); got 300"):
        mel_cepstrum(wave, 16000, order=300)
    with pytest.raises(HMMValueError, match=r"wave must have more than frame_length // 2 = 256 samples; got 100"):
        mel_cepstrum(np.zeros(100), 16000)
    with pytest.raises(HMMValueError, match=r"wave must be finite .*found inf"):
        mel_cepstrum(np.full(2000, np.inf), 16000)
