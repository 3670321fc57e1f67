"""Streaming front end: StreamingFeatures equals the offline FeatureExtractor however the signal
is cut into blocks, and OnlineCMVN equals a per-frame numpy reference of its formula."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given
from hypothesis import strategies as st

from pytorch_hmm.data import sample_corpus
from pytorch_hmm.errors import HMMDimensionError, HMMDtypeError, HMMTypeError, HMMValueError
from pytorch_hmm.speech import FeatureExtractor, OnlineCMVN, StreamingFeatures

RATE = 16000
MFCC = FeatureExtractor(kind="mfcc", deltas=False, top_db=None)
LOG_MEL = FeatureExtractor(kind="log_mel", top_db=None)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """1.2 s of flite speech from the bundled sample corpus (16 kHz; starts with digital silence)."""
    y, rate = sf.read(sample_corpus() / "slt" / "slt_0000.flac", dtype="float32")
    assert rate == RATE
    return y[: int(1.2 * RATE)]


def _stream(extractor: FeatureExtractor, y: np.ndarray, sizes) -> torch.Tensor:
    """push(...) blocks of ``sizes`` (cycled) until y is consumed, then flush()."""
    stream = extractor.stream()
    out, i, k = [], 0, 0
    while i < len(y):
        n = int(sizes[k % len(sizes)])
        out.append(stream.push(y[i:i + n]))
        i, k = i + n, k + 1
    assert stream.samples_seen == len(y)
    out.append(stream.flush())
    assert stream.samples_seen == 0 and stream.frames_emitted == 0  # flush resets
    return torch.cat(out)


# ---- StreamingFeatures -------------------------------------------------------------------


@pytest.mark.parametrize("extractor", [MFCC, LOG_MEL], ids=["mfcc", "log_mel"])
@pytest.mark.parametrize("seed", range(4))
def test_random_blocks_equal_offline_features_of_speech(speech, extractor, seed) -> None:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, 2000, size=64)  # 0-sample blocks included
    got = _stream(extractor, speech, sizes)
    want = extractor(speech)
    assert got.shape == want.shape == (1 + len(speech) // 160, extractor.feature_dim)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-6, atol=5e-5)


@pytest.mark.parametrize("extractor", [MFCC, LOG_MEL], ids=["mfcc", "log_mel"])
def test_one_sample_blocks_equal_offline_features(speech, extractor) -> None:
    y = speech[:4000]
    torch.testing.assert_close(_stream(extractor, y, [1]), extractor(y), rtol=1e-6, atol=5e-5)


@given(n=st.integers(1, 1500), sizes=st.lists(st.integers(0, 700), min_size=1, max_size=8), seed=st.integers(0, 99),
       hop_ms=st.sampled_from([10.0, 40.0]))
def test_any_length_and_blocking_equals_offline_in_float64(n, sizes, seed, hop_ms) -> None:
    """Short signals (fewer samples than the padding, 1 sample), hops longer than the FFT."""
    if not any(sizes):
        sizes = sizes + [1]
    y = np.random.default_rng(seed).standard_normal(n)
    ex = FeatureExtractor(kind="mfcc", deltas=False, top_db=None, hop_ms=hop_ms, window_ms=10.0, dtype=torch.float64)
    got = _stream(ex, y, sizes)
    want = ex(y)
    assert got.shape == want.shape == (1 + n // ex.hop_length, 13)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_frames_appear_when_their_last_sample_arrives() -> None:
    """Frame t needs samples up to t*hop + n_fft//2 (16 ms of look-ahead at 16 kHz)."""
    stream = LOG_MEL.stream()
    assert stream.lookahead_samples == 256
    assert stream.push(np.zeros(255, np.float32)).shape == (0, 80)
    assert stream.push(np.zeros(1, np.float32)).shape == (1, 80)  # frame 0: samples [-256, 256)
    assert stream.push(np.zeros(159, np.float32)).shape == (0, 80)
    assert stream.push(np.zeros(1, np.float32)).shape == (1, 80)  # frame 1 at 160 + 256 samples
    assert stream.push(np.zeros(1600, np.float32)).shape == (10, 80)
    assert (stream.frames_emitted, stream.samples_seen) == (12, 2016)
    assert stream.flush().shape == (1 + 2016 // 160 - 12, 80)
    assert stream.flush().shape == (0, 80)  # nothing pushed: no frames


def test_torch_blocks_and_method_on_extractor(speech) -> None:
    stream = MFCC.stream()
    assert isinstance(stream, StreamingFeatures)
    y = torch.from_numpy(speech[:3000])
    got = torch.cat([stream.push(y[:1234]), stream.push(y[1234:]), stream.flush()])
    torch.testing.assert_close(got, MFCC(speech[:3000]), rtol=1e-6, atol=5e-5)


def test_streaming_refuses_whole_signal_settings() -> None:
    with pytest.raises(HMMValueError, match=r"streaming features need top_db=None .*whole signal's maximum.*; got top_db=80"):
        FeatureExtractor(kind="log_mel").stream()
    with pytest.raises(HMMValueError, match=r"streaming features need deltas=False for kind='mfcc' .*; got deltas=True"):
        FeatureExtractor(kind="mfcc", top_db=None).stream()
    with pytest.raises(HMMValueError, match=r"streaming features need cmvn='none' .*OnlineCMVN.*; got cmvn='utterance'"):
        FeatureExtractor(kind="log_mel", top_db=None, cmvn="utterance").stream()
    with pytest.raises(HMMTypeError, match=r"extractor must be a FeatureExtractor; got dict"):
        StreamingFeatures({"kind": "mfcc"})
    FeatureExtractor(kind="log_mel", top_db=None, deltas=True).stream()  # deltas only apply to MFCC


def test_push_errors() -> None:
    stream = MFCC.stream()
    with pytest.raises(HMMDimensionError, match=r"samples must be a mono block \(n,\); got shape \(160, 2\).*mix channels down"):
        stream.push(np.zeros((160, 2), np.float32))
    with pytest.raises(HMMDimensionError, match=r"samples must be a mono block \(n,\); got shape \(\)"):
        stream.push(np.zeros((), np.float32))
    with pytest.raises(HMMValueError, match=r"samples must be finite; got NaN or infinite samples"):
        stream.push(np.array([0.0, np.nan]))
    with pytest.raises(HMMDtypeError, match=r"samples must be float32 or float64 in \[-1, 1\]; got int16 \(divide int16 PCM by 32768\)"):
        stream.push(np.zeros(10, np.int16))
    with pytest.raises(HMMDtypeError, match=r"samples must be float32 or float64; got torch.int64"):
        stream.push(torch.zeros(10, dtype=torch.long))
    with pytest.raises(HMMTypeError, match=r"samples must be a numpy array or a torch.Tensor of shape \(n,\); got list"):
        stream.push([0.0, 0.1])
    assert stream.samples_seen == 0  # rejected blocks leave no trace


# ---- OnlineCMVN --------------------------------------------------------------------------


def reference_cmvn(x: np.ndarray, window: int, variance: bool, prior_mean=None, prior_var=None, prior_frames=0,
                   eps=1e-8) -> np.ndarray:
    """The documented formula, one frame at a time."""
    out = np.empty_like(x)
    for t in range(len(x)):
        past = x[max(0, t + 1 - window): t + 1]
        n = len(past)
        w = min(prior_frames, window - n) if prior_mean is not None else 0
        total = past.sum(0) + (w * prior_mean if w else 0.0)
        mean = total / (n + w)
        out[t] = x[t] - mean
        if variance:
            second = np.square(past).sum(0) + (w * (prior_var + np.square(prior_mean)) if w else 0.0)
            var = second / (n + w) - np.square(mean)
            out[t] /= np.maximum(np.sqrt(np.maximum(var, 0.0)), eps)
    return out


def _chunked(cmvn: OnlineCMVN, x: np.ndarray, rng) -> np.ndarray:
    out, i = [], 0
    while i < len(x):
        n = int(rng.integers(0, 40))
        out.append(cmvn(torch.from_numpy(x[i:i + n])))
        i += n
    assert cmvn.frames_seen == len(x)
    return torch.cat(out).numpy()


# window 1000 > the stream's 300 frames; variance needs window >= 2 (see test_online_cmvn_errors)
@pytest.mark.parametrize("window, variance", [(w, v) for w in (1, 2, 7, 50, 1000) for v in (False, True) if w > 1 or not v])
@pytest.mark.parametrize("prior", [False, True])
def test_online_cmvn_equals_per_frame_reference(window, variance, prior) -> None:
    rng = np.random.default_rng(window + 2 * variance + 4 * prior)
    x = rng.normal(5.0, 3.0, size=(300, 4)) * np.array([1.0, 10.0, 0.1, 100.0])
    kw = dict(prior_mean=rng.normal(size=4), prior_var=rng.uniform(0.5, 2.0, size=4), prior_frames=30) if prior else {}
    cmvn = OnlineCMVN(4, window=window, variance=variance, **kw)
    got = _chunked(cmvn, x, rng)
    np.testing.assert_allclose(got, reference_cmvn(x, window, variance, **kw), rtol=0, atol=1e-6)
    cmvn.reset()  # a new stream: the same result again
    np.testing.assert_allclose(_chunked(cmvn, x, rng), got, rtol=0, atol=1e-6)


def test_online_cmvn_whole_stream_mean_and_float32() -> None:
    x = torch.randn(80, 3, dtype=torch.float64) + 7.0
    out = OnlineCMVN(3, window=600)(x)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out[-1], x[-1] - x.mean(0))  # the last frame sees the whole stream
    assert bool((out[0] == 0).all())  # no prior: the first frame is its own mean
    out32 = OnlineCMVN(3, window=20, variance=True)(x.float())
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), torch.from_numpy(reference_cmvn(x.numpy(), 20, True)), rtol=1e-5, atol=1e-5)
    assert OnlineCMVN(3)(np.zeros((0, 3))).shape == (0, 3)


def test_online_cmvn_errors() -> None:
    with pytest.raises(HMMValueError, match=r"dim must be a positive int; got 0"):
        OnlineCMVN(0)
    with pytest.raises(HMMValueError, match=r"window must be a positive int; got 0"):
        OnlineCMVN(3, window=0)
    with pytest.raises(HMMValueError, match=r"window must be >= 2 frames with variance=True \(one frame has no variance\); got window=1"):
        OnlineCMVN(3, window=1, variance=True)
    with pytest.raises(HMMValueError, match=r"prior_frames must be an int >= 0; got -1"):
        OnlineCMVN(3, prior_frames=-1)
    with pytest.raises(HMMValueError, match=r"eps must be a positive finite number; got 0"):
        OnlineCMVN(3, eps=0)
    with pytest.raises(HMMTypeError, match=r"variance must be a bool; got str"):
        OnlineCMVN(3, variance="yes")
    with pytest.raises(HMMDimensionError, match=r"prior_mean must have shape \(D,\) == \(3,\); got \(4,\)"):
        OnlineCMVN(3, prior_mean=np.zeros(4))
    with pytest.raises(HMMValueError, match=r"prior_mean must be finite; got NaN or infinite values"):
        OnlineCMVN(3, prior_mean=[0.0, np.nan, 1.0])
    with pytest.raises(HMMTypeError, match=r"prior_mean must be a \(D,\) tensor or array; got str"):
        OnlineCMVN(3, prior_mean="zeros")
    with pytest.raises(HMMValueError, match=r"prior_var must be positive; got minimum 0"):
        OnlineCMVN(3, prior_mean=np.zeros(3), prior_var=np.zeros(3))
    with pytest.raises(HMMValueError, match=r"prior_var needs prior_mean; got prior_var without prior_mean"):
        OnlineCMVN(3, prior_var=np.ones(3))
    with pytest.raises(HMMValueError, match=r"prior_frames > 0 needs prior_mean; got prior_frames=10 without a prior"):
        OnlineCMVN(3, prior_frames=10)
    with pytest.raises(HMMValueError, match=r"variance=True with a prior needs prior_var .*; got prior_mean only"):
        OnlineCMVN(3, variance=True, prior_mean=np.zeros(3), prior_frames=5)
    cmvn = OnlineCMVN(3)
    with pytest.raises(HMMDimensionError, match=r"frames must be \(t, D\) with D == 3; got shape \(5, 4\)"):
        cmvn(torch.zeros(5, 4))
    with pytest.raises(HMMDimensionError, match=r"frames must be \(t, D\) with D == 3; got shape \(1, 5, 3\).*no batch axis"):
        cmvn(torch.zeros(1, 5, 3))
    with pytest.raises(HMMValueError, match=r"frames must be finite; got NaN or infinite values"):
        cmvn(torch.tensor([[0.0, float("inf"), 0.0]]))
    with pytest.raises(HMMDtypeError, match=r"frames must be float32 or float64; got torch.int64"):
        cmvn(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(HMMTypeError, match=r"frames must be a torch.Tensor or a numpy array of shape \(t, D\); got list"):
        cmvn([[0.0, 0.0, 0.0]])
    assert cmvn.frames_seen == 0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_online_cmvn_on_cuda_equals_cpu() -> None:
    x = torch.randn(200, 5, dtype=torch.float64) * 4 + 3
    kw = dict(window=30, variance=True, prior_mean=torch.ones(5), prior_var=torch.full((5,), 2.0), prior_frames=10)
    cpu, gpu = OnlineCMVN(5, **kw), OnlineCMVN(5, **kw)
    want = torch.cat([cpu(x[:70]), cpu(x[70:])])
    got = torch.cat([gpu(x[:70].cuda()), gpu(x[70:].cuda())])
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), want, rtol=0, atol=1e-9)
