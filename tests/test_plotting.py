"""pytorch_hmm.plotting.plot_alignment: waveform, spectrogram and labelled tiers, written as PNG."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from pytorch_hmm.alignment import Segment
from pytorch_hmm.errors import HMMTypeError, HMMValueError
from pytorch_hmm.plotting import plot_alignment, plot_utterance
from pytorch_hmm.speech import Utterance

pytest.importorskip("matplotlib")

RATE = 16000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _signal(seconds: float = 1.2) -> np.ndarray:
    """A tone with an on/off envelope (speech-like energy changes), float32."""
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)


TIERS = {
    "words": [Segment("hello", 0.10, 0.55), Segment("world", 0.60, 1.10)],
    "phones": [Segment("HH", 0.10, 0.20), Segment("AH", 0.20, 0.35), Segment("L", 0.35, 0.45),
               Segment("OW", 0.45, 0.55), Segment("sil", 0.55, 0.60), Segment("W", 0.60, 0.75),
               Segment("ER", 0.75, 0.90), Segment("L", 0.90, 1.00), Segment("D", 1.00, 1.10)],
}


def _boundary_lines(ax) -> dict:
    """Label of each vertical-line collection on ``ax`` -> the x positions of its lines."""
    out = {}
    for coll in ax.collections:
        segments = coll.get_segments()
        if segments and all(np.isclose(s[0, 0], s[1, 0]) for s in segments):
            out[coll.get_label()] = sorted(float(s[0, 0]) for s in segments)
    return out


def _boundaries(segments) -> list:
    return sorted({t for s in segments for t in (s.start, s.end)})


def test_writes_a_png_with_the_tiers_labels_and_boundaries(tmp_path: Path) -> None:
    path = tmp_path / "new" / "folder" / "utt.png"
    fig = plot_alignment(_signal(), RATE, TIERS, path, title="utt: hello world")
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and 10_000 < len(data) < 2_000_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width >= 600 and 300 <= height < width  # a wide strip, as Praat draws one
    assert fig._suptitle.get_text() == "utt: hello world"

    wave_ax, spec_ax, words_ax, phones_ax = fig.axes
    assert wave_ax.get_ylabel() == "waveform" and spec_ax.images  # the spectrogram is an image
    assert words_ax.get_ylabel() == "words" and phones_ax.get_ylabel() == "phones"
    assert [t.get_text() for t in words_ax.texts] == ["hello", "world"]
    assert [t.get_text() for t in phones_ax.texts] == [s.unit for s in TIERS["phones"]]
    for ax, name in ((words_ax, "words"), (phones_ax, "phones")):
        lines = _boundary_lines(ax)
        assert lines[f"{name} boundaries"] == pytest.approx(_boundaries(TIERS[name]))
        # each label sits in the middle of its interval
        for text, seg in zip(ax.texts, TIERS[name]):
            assert text.get_position()[0] == pytest.approx((seg.start + seg.end) / 2)
    over_spectrogram = _boundary_lines(spec_ax)
    assert over_spectrogram["words boundaries"] == pytest.approx(_boundaries(TIERS["words"]))
    assert over_spectrogram["phones boundaries"] == pytest.approx(_boundaries(TIERS["phones"]))
    assert phones_ax.get_xlim() == pytest.approx((0, len(_signal()) / RATE))
    assert phones_ax.get_xlabel() == "time (s)"


def test_the_figure_does_not_touch_pyplot_and_nothing_is_written_without_a_path(tmp_path: Path) -> None:
    had_pyplot = "matplotlib.pyplot" in sys.modules
    fig = plot_alignment(torch.from_numpy(_signal()), RATE, TIERS)  # a tensor works too
    assert ("matplotlib.pyplot" in sys.modules) == had_pyplot
    assert list(tmp_path.iterdir()) == []
    if had_pyplot:
        import matplotlib.pyplot as plt

        assert fig not in [plt.figure(n) for n in plt.get_fignums()]


def test_long_audio_is_drawn_as_an_envelope_and_max_seconds_crops(tmp_path: Path) -> None:
    audio = np.tile(_signal(), 10)  # 12 s
    tiers = {"phones": [Segment(f"p{i}", 0.5 * i, 0.5 * (i + 1)) for i in range(24)]}
    fig = plot_alignment(audio, RATE, tiers, tmp_path / "long.png", max_seconds=3.2)
    phones_ax = fig.axes[-1]
    assert phones_ax.get_xlim() == pytest.approx((0, 3.2))
    assert [t.get_text() for t in phones_ax.texts] == [f"p{i}" for i in range(7)]  # p6 starts at 3.0 s
    assert max(_boundary_lines(phones_ax)["phones boundaries"]) == pytest.approx(3.2)
    assert (tmp_path / "long.png").stat().st_size > 10_000


def test_plot_utterance_reads_the_utterances_segment_and_titles_it(tmp_path: Path) -> None:
    import soundfile as sf

    recording = np.concatenate([np.zeros(RATE, np.float32), _signal(), np.zeros(RATE, np.float32)])
    sf.write(tmp_path / "rec.wav", recording, RATE)
    utt = Utterance("s1-0001", "s1", tmp_path / "rec.wav", "hello world", segment=(1.0, 2.2))
    fig = plot_utterance(utt, TIERS, tmp_path / "utt.png", sample_rate=RATE)
    assert fig._suptitle.get_text() == "s1-0001: hello world"
    assert fig.axes[-1].get_xlim() == pytest.approx((0, 1.2))  # the segment, not the 3.2 s file
    envelope = fig.axes[0].collections[0].get_paths()[0].vertices[:, 1]  # 1.2 s: drawn as a min/max envelope
    assert np.abs(envelope).max() == pytest.approx(np.abs(_signal()).max(), rel=1e-3)  # the tone, not the silence
    assert (tmp_path / "utt.png").read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(HMMTypeError, match="utterance must be a corpus Utterance"):
        plot_utterance("rec.wav", TIERS)
    with pytest.raises(HMMValueError, match="sample_rate must be a positive int"):
        plot_utterance(utt, TIERS, sample_rate=0)


def test_no_tiers_and_an_empty_tier_are_drawn(tmp_path: Path) -> None:
    assert len(plot_alignment(_signal(0.3), RATE, {}, tmp_path / "a.png").axes) == 2
    fig = plot_alignment(_signal(0.3), RATE, {"words": []}, tmp_path / "b.png")
    assert len(fig.axes) == 3 and len(fig.axes[-1].texts) == 0
    assert plot_alignment(np.zeros(1), RATE, {}).axes  # a single (silent) sample still plots


def test_labels_outside_the_default_font_give_one_clear_warning_or_a_fallback_font(tmp_path: Path) -> None:
    tiers = {"words": [Segment("안녕하세요", 0.0, 1.0)], "phones": [Segment("a", 0.0, 0.5), Segment("n", 0.5, 1.0)]}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig = plot_alignment(_signal(1.0), RATE, tiers, tmp_path / "ko.png", title="안녕하세요")
    messages = [str(w.message) for w in caught]
    assert not any("missing from font" in m for m in messages), messages  # never one per glyph
    assert len(messages) <= 1
    if messages:  # no installed font has Hangul: say what to install
        assert "no installed font has glyphs" in messages[0] and "fonts-noto-cjk" in messages[0]
        assert caught[0].filename == __file__  # points at the caller
    else:
        assert len(fig.axes[2].texts[0].get_fontfamily()) == 2  # a fallback font for Hangul
    assert (tmp_path / "ko.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize(
    "audio, rate, tiers, error, match",
    [
        (np.zeros(0), RATE, {}, HMMValueError, "audio must hold at least one sample"),
        (np.zeros((2, 100)), RATE, {}, HMMValueError, r"audio must be 1-D mono samples \(N,\); got shape \(2, 100\)"),
        (np.array([0.0, np.nan]), RATE, {}, HMMValueError, "audio must be finite"),
        ("not audio", RATE, {}, HMMTypeError, "audio must be a 1-D array"),
        (np.zeros(100), 0, {}, HMMValueError, "sample_rate must be a positive int; got 0"),
        (np.zeros(100), 16000.0, {}, HMMValueError, "sample_rate must be a positive int; got 16000.0"),
        (np.zeros(100), True, {}, HMMValueError, "sample_rate must be a positive int; got True"),
        (np.zeros(100), RATE, [Segment("a", 0, 0.001)], HMMTypeError, "tiers must be a mapping"),
        (np.zeros(100), RATE, {1: []}, HMMTypeError, "tiers must have non-empty str names"),
        (np.zeros(RATE), RATE, {"phones": [Segment("a", 0.0, 0.5), Segment("b", 0.5, 1.5)]}, HMMValueError,
         r"tiers\['phones'\]\[1\] \('b', 0.5..1.5 s\) ends after the audio, which lasts 1 s"),
        (np.zeros(RATE), RATE, {"phones": [Segment("a", 0.2, 0.5), Segment("b", 0.4, 0.6)]}, HMMValueError,
         r"tiers\['phones'\]\[1\] must not start before"),
        (np.zeros(RATE), RATE, {"phones": [Segment("a", -0.1, 0.5)]}, HMMValueError,
         r"tiers\['phones'\]\[0\].start must be >= 0"),
        (np.zeros(RATE), RATE, {"phones": [("a", 0.0, 0.5)]}, HMMTypeError, r"tiers\['phones'\]\[0\] must be a Segment"),
    ],
)
def test_bad_arguments_are_named(audio, rate, tiers, error, match) -> None:
    with pytest.raises(error, match=match):
        plot_alignment(audio, rate, tiers)


@pytest.mark.parametrize("max_seconds", [0, -1.0, float("nan"), "2"])
def test_bad_max_seconds(max_seconds) -> None:
    with pytest.raises(HMMValueError, match="max_seconds must be a positive finite number of seconds"):
        plot_alignment(np.zeros(100), RATE, {}, max_seconds=max_seconds)


def test_an_end_written_with_six_decimals_just_past_the_audio_is_accepted() -> None:
    audio = np.zeros(16001)  # 1.0000625 s; a TextGrid rounds the end to 1.000063
    plot_alignment(audio, RATE, {"phones": [Segment("a", 0.0, 1.000063)]})


def test_missing_matplotlib_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        plot_alignment(np.zeros(100), RATE, {})
