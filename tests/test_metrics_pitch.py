"""F0 metrics: closed forms, a per-frame Python reference, hypothesis properties, batches with
lengths, one pYIN run on a synthetic harmonic tone, doctests, one test per error message."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pytorch_hmm.metrics.pitch as pitch_module
from pytorch_hmm.errors import HMMDimensionError, HMMValueError
from pytorch_hmm.metrics.pitch import estimate_f0, f0_frame_error, f0_rmse, gross_pitch_error, vuv_error_rate


def reference(ref, syn, threshold=0.2):
    """Per-frame loop: (rmse_hz, rmse_cents, vuv, gpe, ffe); NaN where no frame is voiced in both."""
    both = [(r, s) for r, s in zip(ref, syn) if r > 0 and s > 0]
    vuv = sum((r > 0) != (s > 0) for r, s in zip(ref, syn))
    gross = sum(abs(s - r) > threshold * r for r, s in both)
    if both:
        hz = math.sqrt(sum((s - r) ** 2 for r, s in both) / len(both))
        cents = math.sqrt(sum((1200 * math.log2(s / r)) ** 2 for r, s in both) / len(both))
        gpe = gross / len(both)
    else:
        hz = cents = gpe = math.nan
    return hz, cents, vuv / len(ref), gpe, (vuv + gross) / len(ref)


f0_values = st.one_of(st.just(0.0), st.floats(50.0, 500.0))
tracks = st.integers(1, 12).flatmap(
    lambda n: st.tuples(st.lists(f0_values, min_size=n, max_size=n), st.lists(f0_values, min_size=n, max_size=n))
)


def ours(ref, syn, threshold=0.2):
    return (
        float(f0_rmse(ref, syn)),
        float(f0_rmse(ref, syn, unit="cents")),
        float(vuv_error_rate(ref, syn)),
        float(gross_pitch_error(ref, syn, threshold=threshold)),
        float(f0_frame_error(ref, syn, threshold=threshold)),
    )


def test_doctests():
    result = doctest.testmod(pitch_module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


@settings(max_examples=60)
@given(tracks, st.sampled_from([0.1, 0.2, 0.5]))
def test_matches_reference_and_properties(pair, threshold):
    ref, syn = pair
    got = ours(ref, syn, threshold)
    np.testing.assert_allclose(got, reference(ref, syn, threshold), rtol=1e-10, atol=1e-12)
    back = ours(syn, ref, threshold)
    # RMSE (Hz and cents) and the voicing error are symmetric in ref/syn
    np.testing.assert_allclose(got[:3], back[:3], rtol=1e-12, atol=1e-12)
    assert 0.0 <= got[2] <= 1.0 and 0.0 <= got[4] <= 1.0
    assert math.isnan(got[3]) or 0.0 <= got[3] <= 1.0
    assert got[4] >= got[2]


@pytest.mark.parametrize("bias", [0.5, 7.0, 30.0])
def test_constant_bias_gives_rmse_bias(bias):
    ref = np.linspace(100.0, 300.0, 40)
    assert float(f0_rmse(ref, ref + bias)) == pytest.approx(bias, rel=1e-12)
    assert float(f0_rmse(ref + bias, ref)) == pytest.approx(bias, rel=1e-12)


@pytest.mark.parametrize("semitones", [1, 3, -2, 12])
def test_semitones_in_cents(semitones):
    ref = torch.tensor([110.0, 220.0, 0.0, 300.0], dtype=torch.float64)
    syn = ref * 2.0 ** (semitones / 12)
    assert float(f0_rmse(ref, syn, unit="cents")) == pytest.approx(100.0 * abs(semitones), rel=1e-10)


def test_identical_tracks_and_no_common_voicing():
    ref = [0.0, 120.0, 130.0, 0.0]
    assert ours(ref, ref) == (0.0, 0.0, 0.0, 0.0, 0.0)
    got = ours([0.0, 100.0], [100.0, 0.0])
    assert math.isnan(got[0]) and math.isnan(got[1]) and math.isnan(got[3])
    assert got[2] == 1.0 and got[4] == 1.0


def test_batch_equals_items_with_lengths_and_garbage_padding():
    rng = np.random.default_rng(0)
    lengths = [6, 2, 9]
    ref = np.full((3, 9), np.nan)
    syn = np.full((3, 11), -5.0)
    for b, n in enumerate(lengths):
        ref[b, :n] = np.where(rng.random(n) < 0.3, 0.0, rng.uniform(80, 300, n))
        syn[b, :n] = np.where(rng.random(n) < 0.3, 0.0, rng.uniform(80, 300, n))
    for fn in (f0_rmse, vuv_error_rate, gross_pitch_error, f0_frame_error):
        batch = fn(ref, syn, lengths, lengths)
        items = [float(fn(ref[b, :n], syn[b, :n])) for b, n in enumerate(lengths)]
        assert batch.shape == (3,) and batch.dtype == torch.float64
        np.testing.assert_allclose(batch.numpy(), items, rtol=1e-12)


def test_numpy_equals_torch_and_unbatched_is_0d():
    ref, syn = np.array([100.0, 0.0, 150.0, 200.0]), np.array([90.0, 80.0, 0.0, 260.0])
    for fn in (f0_rmse, vuv_error_rate, gross_pitch_error, f0_frame_error):
        a, b = fn(ref, syn), fn(torch.from_numpy(ref).float(), torch.from_numpy(syn).float())
        assert a.shape == () and a.dtype == torch.float64
        assert float(a) == pytest.approx(float(b), rel=1e-6)


def test_estimate_f0_on_harmonic_tone():
    sr = 16000
    t = np.arange(int(0.4 * sr)) / sr
    tone = sum(np.sin(2 * np.pi * 220.0 * k * t) / k for k in (1, 2, 3))
    wave = np.concatenate([0.5 * tone, np.zeros(int(0.2 * sr))])  # 0.4 s voiced, 0.2 s silence
    f0, prob = estimate_f0(wave, sr, fmin=100.0, fmax=400.0)
    assert f0.shape == prob.shape == (1 + len(wave) // 80,) and f0.dtype == torch.float64
    voiced = f0[:60]
    assert bool((voiced > 0).all()) and abs(float(voiced.median()) / 220.0 - 1.0) < 0.01
    assert bool((f0[-20:] == 0).all())  # silence is unvoiced: 0, not NaN
    assert bool(((prob >= 0) & (prob <= 1)).all())


# --- one test per error message -------------------------------------------------------------


def test_error_negative_f0():
    with pytest.raises(HMMValueError, match=r"syn_f0 must be >= 0 Hz \(0 = unvoiced\) at valid frames; found -3.0"):
        f0_rmse([100.0, 120.0], [100.0, -3.0])


def test_error_nan_f0():
    with pytest.raises(HMMValueError, match=r"ref_f0 must be finite \(at frames before its length\); found NaN"):
        vuv_error_rate([100.0, float("nan")], [100.0, 0.0])


def test_error_mismatched_lengths():
    with pytest.raises(HMMValueError, match=r"ref_f0 and syn_f0 must have the same number of frames; got 3 and 4"):
        f0_frame_error([1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0])


def test_error_batch_mismatch():
    with pytest.raises(HMMDimensionError, match=r"syn_f0 must have the same B as ref_f0 \(2, 3\); got shape \(3, 3\)"):
        gross_pitch_error(np.ones((2, 3)), np.ones((3, 3)))


def test_error_rank():
    with pytest.raises(HMMDimensionError, match=r"ref_f0 must be \(T,\) or \(B, T\); got shape \(1, 2, 3\)"):
        f0_rmse(np.ones((1, 2, 3)), np.ones((1, 2, 3)))


def test_error_unit():
    with pytest.raises(HMMValueError, match=r"unit must be 'hz' or 'cents'; got 'mel'"):
        f0_rmse([100.0], [100.0], unit="mel")


def test_error_threshold():
    with pytest.raises(HMMValueError, match=r"threshold must be a positive number .*; got 0"):
        f0_frame_error([100.0], [100.0], threshold=0)


def test_error_estimate_f0_arguments():
    with pytest.raises(HMMValueError, match=r"fmin and fmax must satisfy 0 < fmin < fmax <= sample_rate / 2; got 300, 200"):
        estimate_f0(np.zeros(4000), 16000, fmin=300, fmax=200)
    with pytest.raises(HMMValueError, match=r"sample_rate must be a positive number of Hz; got 0"):
        estimate_f0(np.zeros(4000), 0)
    with pytest.raises(HMMValueError, match=r"wave must have at least frame_length = 2048 samples; got 1000"):
        estimate_f0(np.zeros(1000), 16000)
