"""Data shipped with the package: the sample corpus of ``pytorch-hmm demo``."""

from __future__ import annotations

from pathlib import Path

__all__ = ["sample_corpus"]


def sample_corpus() -> Path:
    """The bundled sample corpus: ``<voice>/<id>.flac`` + ``.lab`` (MFA layout) and the true
    phone timings in ``reference/<voice>/<id>.TextGrid`` (``scripts/make_sample_corpus.py``;
    flite voices, licence in ``LICENSE.md`` there)."""
    return Path(__file__).resolve().parent / "sample"
