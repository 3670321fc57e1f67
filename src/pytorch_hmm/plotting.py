"""Alignment plots: waveform, log-mel spectrogram and interval tiers, like Praat's TextGrid view.

:func:`plot_alignment` draws one utterance top to bottom: the waveform, a log-mel spectrogram
(25 ms windows, 10 ms hop, 80 mel bands) and one row per tier (``words``, ``phones``, ... in the
mapping's order) of labelled intervals, with each tier's boundaries as vertical lines on its row
and over the spectrogram. It builds a :class:`matplotlib.figure.Figure` directly, without
``pyplot``: no global state changes, no backend is chosen, no window opens; the figure is the
caller's to show, save again or drop. :func:`plot_utterance` does the same for a corpus utterance
(reading its audio, titled with its id and text).

Labels in a script the default font lacks (Hangul words of a Korean corpus) are drawn with an
installed font that has their glyphs; where none has, one warning says what to install. matplotlib
is imported only when a plot is drawn, so the rest of the library runs without it.
"""

from __future__ import annotations

import functools
import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Optional, Sequence, Union

import numpy as np

from .alignment import Segment, check_segments
from .errors import HMMTypeError, HMMValueError
from .validation import check_count, check_number

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_alignment", "plot_utterance"]

PathLike = Union[str, Path]
EPS = 1e-6  # seconds of slack for segment ends written with finite precision
N_MELS = 80
WAVEFORM_POINTS = 4000  # the waveform is drawn as a min/max envelope of at most this many columns


def plot_alignment(
    audio: object,
    sample_rate: int,
    tiers: Mapping[str, Sequence[Segment]],
    path: Optional[PathLike] = None,
    *,
    title: Optional[str] = None,
    max_seconds: Optional[float] = None,
) -> "Figure":
    """Plot an aligned utterance and, when ``path`` is given, write it as a PNG there.

    Args:
        audio: mono samples ``(N,)`` (numpy array, tensor or list), at ``sample_rate``.
        sample_rate: samples per second, a positive integer.
        tiers: tier name -> :class:`~pytorch_hmm.alignment.Segment` list in seconds (sorted,
            non-overlapping, within the audio), e.g. what :func:`pytorch_hmm.aligner.align`
            returns for one utterance: ``{"words": [...], "phones": [...]}``.
        path: where to write the PNG (parent folders are created); ``None``: write nothing.
        title: a title over the figure (e.g. the utterance id and its text).
        max_seconds: draw only the first ``max_seconds`` of the audio (long utterances).

    Returns:
        the :class:`matplotlib.figure.Figure` (not registered with ``pyplot``).

    Raises:
        ImportError: matplotlib is not installed.
        HMMValueError: empty or non-finite audio, a bad ``sample_rate`` or ``max_seconds``,
            malformed tiers or segments outside the audio (the message names the argument).
    """
    figure_class = _matplotlib_figure()
    samples = _check_audio(audio)
    rate = check_count(sample_rate, "sample_rate")
    duration = samples.size / rate
    checked = _check_tiers(tiers, duration)
    shown = duration
    if max_seconds is not None:
        shown = min(duration, check_number(max_seconds, "max_seconds", positive=True, unit="seconds"))
    samples = samples[: max(1, int(round(shown * rate)))]
    checked = {name: _crop(segs, shown) for name, segs in checked.items()}

    with ExitStack() as stack:
        _use_fonts_for(stack, [str(s.unit) for segs in checked.values() for s in segs] + list(checked) + [title or ""])
        fig = _draw(figure_class, samples, rate, shown, checked, title)
        if path is not None:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, format="png", dpi=100)
    return fig


# ----------------------------------------------------------------------------- checks
def _matplotlib_figure():
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError("plot_alignment needs matplotlib, which is not installed: pip install matplotlib") from err
    return Figure


def plot_utterance(
    utterance: object,
    tiers: Mapping[str, Sequence[Segment]],
    path: Optional[PathLike] = None,
    *,
    sample_rate: int = 16000,
    max_seconds: Optional[float] = None,
) -> "Figure":
    """:func:`plot_alignment` of a corpus :class:`~pytorch_hmm.speech.Utterance`: its audio
    (its segment of the file) read at ``sample_rate``, titled ``"<id>: <text>"``.

    Raises what :func:`plot_alignment` raises, and
    :class:`~pytorch_hmm.errors.AudioError` where the audio cannot be read.
    """
    for attribute in ("id", "text", "load_audio"):
        if not hasattr(utterance, attribute):
            raise HMMTypeError(f"utterance must be a corpus Utterance (with id, text and load_audio); "
                               f"got {type(utterance).__name__}")
    rate = check_count(sample_rate, "sample_rate")
    return plot_alignment(utterance.load_audio(rate), rate, tiers, path,
                          title=f"{utterance.id}: {utterance.text}", max_seconds=max_seconds)


def _check_audio(audio: object) -> np.ndarray:
    if hasattr(audio, "detach"):  # a torch tensor, on any device
        audio = audio.detach().cpu().numpy()
    try:
        samples = np.asarray(audio, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise HMMTypeError(f"audio must be a 1-D array of samples; got {type(audio).__name__}") from err
    if samples.ndim != 1:
        raise HMMValueError(f"audio must be 1-D mono samples (N,); got shape {samples.shape}")
    if samples.size == 0:
        raise HMMValueError("audio must hold at least one sample; got an empty array")
    if not np.isfinite(samples).all():
        raise HMMValueError("audio must be finite; got NaN or infinite samples")
    return samples


def _check_tiers(tiers: object, duration: float) -> dict:
    if not isinstance(tiers, Mapping):
        raise HMMTypeError(f"tiers must be a mapping of tier name -> segments; got {type(tiers).__name__}")
    out = {}
    for name, segments in tiers.items():
        if not isinstance(name, str) or not name:
            raise HMMTypeError(f"tiers must have non-empty str names; got {name!r}")
        segs = check_segments(segments, f"tiers[{name!r}]")
        for i, seg in enumerate(segs):
            if seg.end > duration + EPS:
                raise HMMValueError(f"tiers[{name!r}][{i}] ({seg.unit!r}, {seg.start!r}..{seg.end!r} s) ends after "
                                    f"the audio, which lasts {duration:.6g} s: are the segments in seconds, and "
                                    "is the audio the utterance's?")
        out[name] = segs
    return out


def _crop(segments: Sequence[Segment], seconds: float) -> list:
    """The segments that start before ``seconds``, the last one cut there."""
    return [Segment(s.unit, s.start, min(s.end, seconds), s.score) for s in segments if s.start < seconds]


def _boundaries(segments: Sequence[Segment]) -> list:
    """Distinct onsets and offsets, in time order."""
    return sorted({float(t) for s in segments for t in (s.start, s.end)})


# ----------------------------------------------------------------------------- drawing
def _draw(figure_class, samples: np.ndarray, rate: int, shown: float, tiers: dict, title: Optional[str]) -> "Figure":
    fig = figure_class(figsize=(float(np.clip(2.5 * shown, 8, 30)), 4.2 + 0.55 * len(tiers)), layout="constrained")
    grid = fig.add_gridspec(2 + len(tiers), 1, height_ratios=[1.2, 2.2] + [0.55] * len(tiers))
    wave_ax = fig.add_subplot(grid[0])
    spec_ax = fig.add_subplot(grid[1], sharex=wave_ax)
    tier_axes = [fig.add_subplot(grid[2 + i], sharex=wave_ax) for i in range(len(tiers))]
    _draw_waveform(wave_ax, samples, rate)
    _draw_spectrogram(spec_ax, samples, rate, shown)
    for i, (ax, (name, segs)) in enumerate(zip(tier_axes, tiers.items())):
        _draw_tier(ax, name, segs, fine=i == len(tiers) - 1)
        spec_ax.vlines(_boundaries(segs), 0, 1, transform=spec_ax.get_xaxis_transform(), colors="white",
                       linewidths=1.4 if i == 0 else 0.6, alpha=0.9 if i == 0 else 0.5, label=f"{name} boundaries")
    wave_ax.set_xlim(0, shown)
    for ax in [wave_ax, spec_ax] + tier_axes[:-1]:
        ax.tick_params(labelbottom=False)
    (tier_axes or [spec_ax])[-1].set_xlabel("time (s)")
    if title:
        fig.suptitle(title)
    return fig


def _draw_waveform(ax: "Axes", samples: np.ndarray, rate: int) -> None:
    if samples.size <= 2 * WAVEFORM_POINTS:
        ax.plot(np.arange(samples.size) / rate, samples, color="0.2", linewidth=0.6)
    else:  # a min/max envelope: every peak stays visible, the PNG stays small
        edges = np.linspace(0, samples.size, WAVEFORM_POINTS + 1).astype(int)
        low = np.minimum.reduceat(samples, edges[:-1])
        high = np.maximum.reduceat(samples, edges[:-1])
        ax.fill_between(edges[:-1] / rate, low, high, color="0.2", linewidth=0.3, step="post")
    peak = float(np.max(np.abs(samples))) or 1.0
    ax.set_ylim(-1.05 * peak, 1.05 * peak)
    ax.set_ylabel("waveform")
    ax.set_yticks([])


def _draw_spectrogram(ax: "Axes", samples: np.ndarray, rate: int, seconds: float) -> None:
    import librosa

    hop, win = max(1, round(0.010 * rate)), max(1, round(0.025 * rate))
    n_fft = 1 << max(win - 1, 1).bit_length()
    padded = np.pad(samples, (0, max(0, n_fft - samples.size))).astype(np.float32)  # shorter than a window
    mel = librosa.feature.melspectrogram(y=padded, sr=rate, n_fft=n_fft, hop_length=hop,
                                         win_length=win, n_mels=N_MELS, pad_mode="constant")
    db = librosa.power_to_db(mel, ref=np.max, top_db=80.0)
    ax.imshow(db, origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
              extent=(-0.5 * hop / rate, (db.shape[1] - 0.5) * hop / rate, 0, N_MELS))
    ax.set_ylabel("mel band")
    ax.set_xlim(0, seconds)


def _draw_tier(ax: "Axes", name: str, segments: Sequence[Segment], *, fine: bool) -> None:
    """A row of labelled intervals, as Praat draws a TextGrid tier."""
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_ylabel(name, rotation=0, ha="right", va="center")
    ax.vlines(_boundaries(segments), 0, 1, colors="tab:blue", linewidths=1.0, label=f"{name} boundaries")
    for seg in segments:
        ax.text((seg.start + seg.end) / 2, 0.5, str(seg.unit), ha="center", va="center",
                fontsize=7 if fine else 9, clip_on=True)


# ----------------------------------------------------------------------------- fonts
def _use_fonts_for(stack: ExitStack, texts: Sequence[str]) -> None:
    """Within ``stack``: a fallback font for characters the default font lacks (Hangul labels
    of a Korean corpus), or, where no installed font has them, one warning instead of one per glyph."""
    from matplotlib import font_manager, rc_context

    default = font_manager.findfont(font_manager.FontProperties())
    missing = {c for t in texts for c in t if not c.isspace()} - _charset(default)
    if not missing:
        return
    for entry in font_manager.fontManager.ttflist:
        if "Last Resort" not in entry.name and missing <= _charset(entry.fname):
            stack.enter_context(rc_context({"font.family": [font_manager.get_font(default).family_name, entry.name]}))
            return
    sample = "".join(sorted(missing)[:5])
    warnings.warn(f"plot_alignment: no installed font has glyphs for {sample!r}, so those labels show as boxes; "
                  "install a font that covers them (Korean: apt-get install fonts-noto-cjk or fonts-nanum)",
                  UserWarning, stacklevel=3)
    stack.enter_context(warnings.catch_warnings())
    warnings.filterwarnings("ignore", message="Glyph .* missing from font")


@functools.lru_cache(maxsize=None)
def _charset(font_path: str) -> frozenset:
    from matplotlib import font_manager

    try:
        return frozenset(chr(c) for c in font_manager.get_font(font_path).get_charmap())
    except (OSError, RuntimeError, ValueError):
        return frozenset()
