"""Audio loading and acoustic features, checked against soundfile, librosa and numpy directly."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from pytorch_hmm.errors import AudioError, HMMDimensionError, HMMDtypeError, HMMTypeError, HMMValueError
from pytorch_hmm.speech.audio import AudioInfo, audio_info, load_audio
from pytorch_hmm.speech.features import (
    FeatureExtractor,
    add_deltas,
    cmvn,
    frame_to_time,
    log_mel,
    mfcc,
    num_frames,
    pad_batch,
    speaker_cmvn,
    time_to_frame,
)

try:  # the reference for the comparisons; only the tests marked needs_librosa use it directly
    import librosa
except ImportError:  # pragma: no cover
    librosa = None
needs_librosa = pytest.mark.skipif(librosa is None, reason="compares with librosa, which is not installed")

SPEECH = Path(__file__).parent / "fixtures" / "LibriSpeech" / "test-clean" / "9001" / "1" / "9001-1-0001.flac"
RATE = 16000


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """1.5 s of real 16 kHz float64 speech (a committed LibriVox fixture)."""
    y, rate = sf.read(SPEECH, dtype="float64")
    assert rate == RATE
    return y[: int(1.5 * RATE)]


def librosa_mfcc(y, rate, *, n_mfcc=13, n_mels=40, n_fft=512, win=400, hop=160, fmin=20.0, width=5, deltas=True,
                 top_db=80.0, **kw):
    mel = dict(sr=rate, n_fft=n_fft, win_length=win, hop_length=hop, n_mels=n_mels, fmin=fmin, **kw)
    if top_db == 80.0:  # librosa.feature.mfcc's own floor
        m = librosa.feature.mfcc(y=y, n_mfcc=n_mfcc, **mel)
    else:
        db = librosa.power_to_db(librosa.feature.melspectrogram(y=y, **mel), top_db=top_db)
        m = librosa.feature.mfcc(S=db, n_mfcc=n_mfcc)
    if deltas:
        mode = "interp" if m.shape[1] >= width else "nearest"
        m = np.concatenate([m, *(librosa.feature.delta(m, width=width, order=k, mode=mode) for k in (1, 2))])
    return m.T


def librosa_log_mel(y, rate, *, n_mels=80, n_fft=512, win=400, hop=160, fmin=20.0, top_db=80.0):
    s = librosa.feature.melspectrogram(
        y=y, sr=rate, n_fft=n_fft, win_length=win, hop_length=hop, n_mels=n_mels, fmin=fmin
    )
    return librosa.power_to_db(s, top_db=top_db).T


# ------------------------------------------------------------------------------ features


@needs_librosa
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-9), (np.float32, 2e-3)])
def test_mfcc_equals_librosa(speech, dtype, tol):
    y = speech.astype(dtype)
    ours = mfcc(y, RATE, dtype=torch.float64)
    ref = librosa_mfcc(y, RATE)
    assert ours.shape == (1 + y.size // 160, 39) == ref.shape
    assert ours.dtype == torch.float64
    np.testing.assert_allclose(ours.numpy(), ref, rtol=tol, atol=tol * 10)
    assert mfcc(y, RATE).dtype == torch.float32


@needs_librosa
def test_mfcc_options_equal_librosa(speech):
    rate = 22050
    y = librosa.resample(speech, orig_sr=RATE, target_sr=rate)
    ours = mfcc(y, rate, n_mfcc=20, deltas=False, n_mels=64, fmin=0.0, fmax=7000.0, top_db=None, dtype=torch.float64)
    # 25 ms = 551.25 -> 551 samples, n_fft = 1024, hop 220.5 -> 221
    ref = librosa_mfcc(y, rate, n_mfcc=20, n_mels=64, n_fft=1024, win=551, hop=221, fmin=0.0, fmax=7000.0,
                       deltas=False, top_db=None)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-9, atol=1e-8)
    ex = FeatureExtractor(sample_rate=rate)
    assert (ex.win_length, ex.hop_length, ex.fft_size) == (551, 221, 1024)


@needs_librosa
def test_log_mel_equals_librosa(speech):
    ours = log_mel(speech, RATE, dtype=torch.float64)
    np.testing.assert_allclose(ours.numpy(), librosa_log_mel(speech, RATE), rtol=1e-9, atol=1e-8)
    ours = log_mel(speech, RATE, n_mels=40, top_db=None, window_ms=20.0, hop_ms=5.0, dtype=torch.float64)
    ref = librosa_log_mel(speech, RATE, n_mels=40, top_db=None, n_fft=512, win=320, hop=80)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-9, atol=1e-8)


@needs_librosa
def test_deltas_of_short_utterance_use_nearest_mode(speech):
    y = speech[:600]  # 4 frames < width 5 (and more than n_fft = 512 samples: no librosa warning)
    ours = mfcc(y, RATE, dtype=torch.float64)
    assert ours.shape == (4, 39)
    np.testing.assert_allclose(ours.numpy(), librosa_mfcc(y, RATE), rtol=1e-9, atol=1e-8)


@needs_librosa
def test_add_deltas_equals_librosa(speech):
    feats = log_mel(speech, RATE, dtype=torch.float64)
    out = add_deltas(feats, width=9, order=1)
    m = feats.numpy().T
    ref = np.concatenate([m, librosa.feature.delta(m, width=9, order=1)]).T
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12, atol=1e-10)


@needs_librosa
def test_frames_and_times_follow_librosa_center_convention():
    ex = FeatureExtractor()
    assert ex.frame_shift == 0.01 and ex.feature_dim == 39
    assert FeatureExtractor("log_mel").feature_dim == 80
    frames = np.arange(50)
    np.testing.assert_allclose(ex.frame_to_time(frames), librosa.frames_to_time(frames, sr=RATE, hop_length=160))
    # every time within half a hop of a centre maps back to that frame
    jitter = np.random.default_rng(1).uniform(-0.49, 0.49, 50) * 0.01
    np.testing.assert_array_equal(ex.time_to_frame(ex.frame_to_time(frames) + jitter), frames)
    assert ex.time_to_frame(0.0149) == 1 and ex.time_to_frame(0.0151) == 2
    assert torch.equal(time_to_frame(torch.tensor([0.0, 0.026]), RATE, 160), torch.tensor([0, 3]))
    assert frame_to_time(3, RATE, 160) == pytest.approx(0.03)
    for n in (512, 513, 4000):
        assert num_frames(n, 160) == librosa.stft(np.zeros(n), n_fft=512, win_length=400, hop_length=160).shape[1]
    # shorter than one window, too: the frames the extractor really makes, without warnings
    for n in (1, 159, 160, 161, 511, 4000):
        assert ex(np.zeros(n, np.float32)).shape[0] == ex.num_frames(n) == num_frames(n, 160)
    assert [num_frames(n, 160) for n in (1, 159, 160, 161)] == [1, 1, 2, 2]


def test_cmvn_of_digital_silence_stays_zero():
    """Constant tracks (all of them, for an all-zero signal) normalise to 0, not to noise of unit variance."""
    feats = FeatureExtractor(cmvn="utterance")(np.zeros(1600, np.float32))
    assert feats.shape == (11, 39) and feats.abs().max() < 1e-3
    assert cmvn(FeatureExtractor()(np.zeros(1600, np.float32))).abs().max() < 1e-3


@needs_librosa
def test_extractor_on_path_resamples(tmp_path, speech):
    path = tmp_path / "a.wav"
    rate = 22050
    y = librosa.resample(speech, orig_sr=RATE, target_sr=rate).astype(np.float32)
    sf.write(path, y, rate, subtype="FLOAT")
    ex = FeatureExtractor("log_mel", dtype=torch.float64)
    back = librosa.resample(y, orig_sr=rate, target_sr=RATE, res_type="soxr_hq")
    expected = torch.from_numpy(librosa_log_mel(back, RATE)).double()
    torch.testing.assert_close(ex(path), expected, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(ex(y, sample_rate=rate), expected, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(ex(torch.from_numpy(back)), expected, rtol=1e-5, atol=1e-4)


@needs_librosa
def test_extractor_cmvn_equals_numpy(speech):
    for kind, ref in (("mfcc", librosa_mfcc(speech, RATE)), ("log_mel", librosa_log_mel(speech, RATE))):
        ours = FeatureExtractor(kind, cmvn="utterance", dtype=torch.float64)(speech)
        np.testing.assert_allclose(ours.numpy(), numpy_cmvn(ref), rtol=1e-7, atol=1e-7)


def test_batch_equals_items_on_valid_frames(speech):
    ex = FeatureExtractor(cmvn="utterance")
    items = [speech[:8000], speech, speech[3000:7000]]
    feats, lengths = ex.batch(items)
    assert feats.shape == (3, 1 + speech.size // 160, 39)
    assert lengths.tolist() == [1 + len(y) // 160 for y in items]
    for b, y in enumerate(items):
        torch.testing.assert_close(feats[b, : lengths[b]], ex(y))
        assert (feats[b, lengths[b]:] == 0).all()


# ------------------------------------------------------------------------------ CMVN, padding


def numpy_cmvn(x: np.ndarray, variance: bool = True) -> np.ndarray:
    out = x - x.mean(axis=0)
    return out / x.std(axis=0) if variance else out


def test_cmvn_equals_numpy_per_utterance_and_masked_batch():
    rng = np.random.default_rng(2)
    items = [rng.normal(3.0, 2.0, (t, 5)) for t in (7, 12, 3)]
    for x in items:
        torch.testing.assert_close(cmvn(x), torch.from_numpy(numpy_cmvn(x)))
        torch.testing.assert_close(cmvn(torch.from_numpy(x), variance=False), torch.from_numpy(numpy_cmvn(x, False)))
    padded, lengths = pad_batch([torch.from_numpy(x) for x in items], padding_value=1e6)
    out = cmvn(padded, lengths)
    for b, x in enumerate(items):
        torch.testing.assert_close(out[b, : len(x)], torch.from_numpy(numpy_cmvn(x)))
        assert (out[b, len(x):] == 0).all()
    padded[1, lengths[1]:] = float("nan")  # padded frames never matter, NaN included
    torch.testing.assert_close(cmvn(padded, lengths), out, equal_nan=False)


def test_speaker_cmvn_pools_each_speakers_frames():
    rng = np.random.default_rng(3)
    items = [rng.normal(i, 1.0 + i, (t, 4)).astype(np.float32) for i, t in enumerate((5, 9, 4, 6))]
    speakers = ["a", "b", "a", "c"]
    out = speaker_cmvn([torch.from_numpy(x) for x in items], speakers)
    for spk in set(speakers):
        idx = [i for i, s in enumerate(speakers) if s == spk]
        pooled = np.concatenate([items[i] for i in idx]).astype(np.float64)
        mean, std = pooled.mean(axis=0), pooled.std(axis=0)
        for i in idx:
            expected = torch.from_numpy(((items[i] - mean) / std).astype(np.float32))
            torch.testing.assert_close(out[i], expected, rtol=1e-5, atol=1e-5)
    centred = speaker_cmvn(items, speakers, variance=False)
    np.testing.assert_allclose(centred[3].numpy(), items[3] - items[3].mean(axis=0), atol=1e-5)


def test_pad_batch_shapes_and_values():
    items = [torch.randn(t, 3, dtype=torch.float64) for t in (4, 2, 6)]
    padded, lengths = pad_batch(items, padding_value=-1.0)
    assert padded.shape == (3, 6, 3) and padded.dtype == torch.float64
    assert lengths.dtype == torch.long and lengths.tolist() == [4, 2, 6]
    for b, x in enumerate(items):
        assert torch.equal(padded[b, : len(x)], x)
        assert (padded[b, len(x):] == -1.0).all()


# ------------------------------------------------------------------------------ loading


def _stereo(rate: int, seconds: float = 0.5, seed: int = 0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    rng = np.random.default_rng(seed)
    left = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)
    right = 0.2 * np.sin(2 * np.pi * 660 * t)
    return np.stack([left, right], axis=1).astype(np.float32)  # (N, 2), soundfile's layout


def test_load_wav_stereo_mixdown_and_channels(tmp_path):
    data = _stereo(RATE)
    path = tmp_path / "s.wav"
    sf.write(path, data, RATE, subtype="FLOAT")
    y, rate = load_audio(path)
    assert rate == RATE and y.dtype == np.float32 and y.shape == (data.shape[0],)
    np.testing.assert_allclose(y, (data[:, 0] + data[:, 1]) / 2, rtol=1e-6, atol=1e-7)
    both, _ = load_audio(str(path), mono=False)
    assert both.shape == (2, data.shape[0])
    np.testing.assert_array_equal(both, data.T)
    info = audio_info(path)
    assert isinstance(info, AudioInfo) and tuple(info[:3]) == (RATE, data.shape[0], 2)
    assert info.format == "WAV" and info.duration == pytest.approx(0.5)


@needs_librosa
@pytest.mark.parametrize("fmt, suffix", [("FLAC", ".flac"), ("OGG", ".ogg")])
def test_load_flac_ogg_other_rate_resampled(tmp_path, fmt, suffix):
    rate = 22050
    path = tmp_path / f"s{suffix}"
    sf.write(path, _stereo(rate), rate, format=fmt)
    decoded, file_rate = sf.read(path, dtype="float32")  # the codec's own output (OGG is lossy)
    mono_ref = decoded.mean(axis=1)
    y, r = load_audio(path, sample_rate=None)
    assert r == rate
    np.testing.assert_allclose(y, mono_ref, rtol=1e-6, atol=1e-7)
    y16, r16 = load_audio(path, 16000)
    assert r16 == 16000 and y16.dtype == np.float32
    assert y16.shape == (math.ceil(decoded.shape[0] * 16000 / rate),)
    ref = librosa.resample(mono_ref, orig_sr=rate, target_sr=16000, res_type="soxr_hq")
    np.testing.assert_allclose(y16, ref, rtol=1e-5, atol=1e-6)
    both, _ = load_audio(path, 16000, mono=False)
    np.testing.assert_allclose(both, librosa.resample(decoded.T, orig_sr=rate, target_sr=16000, res_type="soxr_hq"),
                               rtol=1e-5, atol=1e-6)
    assert audio_info(path).sample_rate == rate


# ------------------------------------------------------------------------------ errors


def test_audio_file_errors(tmp_path):
    with pytest.raises(AudioError, match="does not exist") as err:
        load_audio(tmp_path / "missing.wav")
    assert err.value.path == tmp_path / "missing.wav" and err.value.reason == "does not exist"
    with pytest.raises(AudioError, match="is not a regular file"):
        audio_info(tmp_path)
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match=re.escape("is empty (0 bytes)")):
        load_audio(tmp_path / "empty.wav")
    (tmp_path / "noise.wav").write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(AudioError, match="unsupported or unrecognised audio format"):
        load_audio(tmp_path / "noise.wav")
    (tmp_path / "notes.txt").write_text("not audio at all\n")
    with pytest.raises(AudioError, match=r"unsupported or unrecognised audio format \(suffix '\.txt'\)"):
        audio_info(tmp_path / "notes.txt")
    sf.write(tmp_path / "ok.flac", _stereo(RATE, 1.0), RATE)
    raw = (tmp_path / "ok.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(AudioError, match=r"cannot be read \(corrupt or truncated\?\)"):
        load_audio(tmp_path / "cut.flac")
    sf.write(tmp_path / "zero.wav", np.zeros((0,), np.float32), RATE)
    with pytest.raises(AudioError, match="contains no audio samples"):
        load_audio(tmp_path / "zero.wav")
    with pytest.raises(AudioError, match="contains no audio samples"):
        audio_info(tmp_path / "zero.wav")
    sf.write(tmp_path / "nan.wav", np.array([0.0, np.nan, 0.1], np.float32), RATE, subtype="FLOAT")
    with pytest.raises(AudioError, match="contains NaN or infinite samples"):
        load_audio(tmp_path / "nan.wav")


@pytest.mark.parametrize("bad", [0, -16000, 16000.0, True, "16000"])
def test_load_audio_bad_sample_rate(tmp_path, bad):
    with pytest.raises(HMMValueError, match="sample_rate must be a positive integer number of Hz"):
        load_audio(tmp_path / "whatever.wav", bad)


def test_load_audio_bad_path_type():
    with pytest.raises(HMMTypeError, match="path must be a str or os.PathLike; got int"):
        load_audio(3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(kind="mel"), "kind must be one of"),
        (dict(cmvn="speaker"), "cmvn must be one of"),
        (dict(sample_rate=0), "sample_rate must be a positive integer number of Hz; got 0"),
        (dict(hop_ms=0.0), "hop_ms must be a positive finite number of milliseconds below 10000; got 0.0"),
        (dict(window_ms=float("nan")), "window_ms must be a positive finite number"),
        (dict(n_fft=513), r"n_fft must be an even number of samples; got 513"),
        (dict(n_fft=256), r"n_fft must be >= the window length \(400 samples = 25.0 ms at 16000 Hz\); got 256"),
        (dict(n_fft=512.0), "n_fft must be a positive int; got 512.0"),
        (dict(n_mels=0), "n_mels must be a positive int; got 0"),
        (dict(n_mfcc=41), r"n_mfcc must be an integer in \[1, n_mels\] = \[1, 40\]; got 41"),
        (dict(delta_width=4), "delta_width must be an odd integer >= 3; got 4"),
        (dict(fmin=8000.0), r"fmin and fmax must satisfy 0 <= fmin < fmax <= sample_rate / 2 = 8000 Hz"),
        (dict(top_db=-1.0), "top_db must be a positive finite number; got -1.0"),
        (dict(dtype=torch.float16), "dtype must be torch.float32 or torch.float64; got torch.float16"),
    ],
)
def test_extractor_bad_config(kwargs, message):
    with pytest.raises(HMMValueError, match=message):
        FeatureExtractor(**kwargs)


def test_feature_input_errors():
    y = np.zeros(1600, np.float32)
    with pytest.raises(HMMDtypeError, match="audio must be float32 or float64 samples; got int16"):
        mfcc(np.zeros(1600, np.int16), RATE)
    with pytest.raises(HMMDimensionError, match=r"audio must be a non-empty mono signal \(N,\); got shape \(2, 800\)"
                       r"\. mix channels down first"):
        mfcc(y.reshape(2, 800), RATE)
    with pytest.raises(HMMDimensionError, match=r"got shape \(0,\)"):
        log_mel(y[:0], RATE)
    with pytest.raises(HMMValueError, match="audio must be finite; got NaN or infinite samples"):
        mfcc(np.array([0.0, np.inf] * 400), RATE)
    with pytest.raises(HMMTypeError, match="audio must be a numpy array, a torch.Tensor or a file path; got list"):
        mfcc([0.0] * 1600, RATE)
    with pytest.raises(HMMValueError, match="items must be a non-empty sequence of audio arrays or file paths"):
        FeatureExtractor().batch([])
    with pytest.raises(HMMDimensionError, match=r"features\[0\] must be \(T, D\); got shape \(1, 3, 2\)"):
        pad_batch([torch.zeros(1, 3, 2)])
    with pytest.raises(HMMDimensionError, match=r"features must be \(T, D\); got shape \(2, 3, 4\)\. call add_deltas"):
        add_deltas(torch.zeros(2, 3, 4))
    with pytest.raises(HMMValueError, match="order must be a positive int; got 0"):
        add_deltas(torch.zeros(9, 4), order=0)
    with pytest.raises(HMMValueError, match="width must be an odd integer >= 3; got 2"):
        add_deltas(torch.zeros(9, 4), width=2)


def test_cmvn_and_padding_errors():
    x = torch.zeros(3, 5, 2)
    with pytest.raises(HMMDtypeError, match="features must be float32 or float64; got torch.int64"):
        cmvn(torch.zeros(5, 2, dtype=torch.long))
    with pytest.raises(HMMDimensionError, match=r"features must be \(T, D\) or \(B, T, D\) with no empty axis; got shape \(5,\)"):
        cmvn(torch.zeros(5))
    with pytest.raises(HMMTypeError, match="features must be a torch.Tensor or a numpy array; got list"):
        cmvn([[0.0, 1.0]])
    with pytest.raises(HMMValueError, match=r"lengths is only for a padded batch \(B, T, D\); got features of shape \(5, 2\)"):
        cmvn(x[0], [5])
    with pytest.raises(HMMValueError, match=r"lengths must be in \[1, T\] = \[1, 5\]; got values in \[0, 6\]"):
        cmvn(x, [0, 6, 5])
    x[1, 2, 0] = float("nan")
    with pytest.raises(HMMValueError, match="features must be finite; got NaN or infinite values"):
        cmvn(x)
    with pytest.raises(HMMValueError, match=r"features\[1\] must be finite"):
        speaker_cmvn([x[0], x[1]], ["a", "a"])
    with pytest.raises(HMMValueError, match=r"speakers must be a sequence with one entry per utterance \(2\); got 1 entries"):
        speaker_cmvn([x[0], x[2]], ["a"])
    with pytest.raises(HMMValueError, match=r"speakers must be a sequence with one entry per utterance \(2\); got a str"):
        speaker_cmvn([x[0], x[2]], "ab")
    with pytest.raises(HMMValueError, match=r"features must be a non-empty sequence of \(T_i, D\) tensors"):
        pad_batch([])
    with pytest.raises(HMMValueError, match=r"features\[1\] must match features\[0\] in D, dtype and device \(2, torch.float32"):
        pad_batch([x[0], torch.zeros(4, 3)])
