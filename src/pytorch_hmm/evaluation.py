"""Score a folder of forced alignments against a folder of reference alignments.

The engine of ``pytorch-hmm evaluate REF_DIR HYP_DIR``: :func:`evaluate_directories`.

Files. Both folders are searched recursively for ``*.TextGrid`` and MFA ``*.json`` (as
:func:`~pytorch_hmm.alignment.write_json` writes them; suffixes in any case). The utterance id
is the file name without its suffix, so ``REF/<id>.TextGrid`` matches ``OUT/<speaker>/<id>.TextGrid``
whatever the folder layout on either side. When one folder holds ``<id>.TextGrid`` and
``<id>.json`` side by side the TextGrid is read; an id found in two different subfolders of one
side is a problem (both files listed) and that utterance is not scored. Only the files of ids
present on both sides are read; a reference without a hypothesis is *missing*, a hypothesis
without a reference *extra*. A file that cannot be read, lacks the tier or whose tier is empty
is a *problem* (path and reason) and leaves that utterance out; the rest are still scored.

Scores. The segments of ``tier`` are passed as they are to :mod:`pytorch_hmm.metrics`
(label-aware matching; ``fold`` as there). Labelled silences (``sil``, ``sp``) are ordinary
labels; an empty interval is a gap, and the offset before a gap is a boundary of its own. Pooled
over all scored utterances (counts summed before dividing): boundary accuracy (recall) at each
tolerance, boundary MAE in seconds over all label-aware pairs, boundary precision / recall / F1
at ``f1_tolerance``.

Per-label breakdown. Every reference boundary belongs to the label of the reference segment
that *starts* there (after ``fold``); a boundary where no segment starts (the end of the last
segment, or an offset followed by a gap) belongs to :data:`END`. For each label: ``count``
reference boundaries, ``matched`` = those whose label-aware pair lies within ``f1_tolerance``,
``accuracy = matched / count``, and ``mae`` = mean ``|ref - hyp|`` (seconds) over its paired
boundaries (``None`` if none is paired). Summed over labels these give the pooled numbers.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Hashable, List, Optional, Sequence, Tuple, Union


from .alignment import Segment, read_json, read_textgrid
from .errors import HMMTypeError, HMMValueError
from .validation import check_number
from .metrics import boundary_accuracy, boundary_errors, boundary_f1, boundary_mae
from .metrics.alignment import EPS  # the metrics' slack in every time comparison

__all__ = ["AlignmentEvaluation", "LabelScore", "END", "evaluate_directories"]

END = "(end)"  # label of a reference boundary where no segment starts
_SUFFIXES = {".textgrid": 0, ".json": 1}  # alignment files, in order of preference
PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class LabelScore:
    """Reference boundaries of one label (see the module docstring): count, matched within the
    F1 tolerance, ``accuracy = matched / count``, ``mae`` in seconds (``None``: none paired)."""

    label: str
    count: int
    matched: int
    accuracy: float
    mae: Optional[float]


@dataclass
class AlignmentEvaluation:
    """Pooled boundary scores of the matched utterances, the per-label breakdown, and what was not scored."""

    reference_dir: str
    hypothesis_dir: str
    tier: str
    f1_tolerance: float
    utterances: int = 0
    reference_boundaries: int = 0
    hypothesis_boundaries: int = 0
    accuracy: Dict[float, Optional[float]] = field(default_factory=dict)  # tolerance (s) -> share of ref boundaries
    mae: Optional[float] = None  # seconds
    precision: Optional[float] = None
    recall: Optional[float] = None
    f1: Optional[float] = None
    labels: List[LabelScore] = field(default_factory=list)  # by count, most frequent first
    problems: List[Tuple[str, str]] = field(default_factory=list)  # (path, reason)
    missing: List[str] = field(default_factory=list)  # ids with a reference but no hypothesis
    extra: List[str] = field(default_factory=list)  # ids with a hypothesis but no reference

    def to_dict(self) -> dict:
        """JSON-ready data (``--json``); NaN never appears (``None`` instead)."""
        return {
            "reference_dir": self.reference_dir, "hypothesis_dir": self.hypothesis_dir, "tier": self.tier,
            "utterances": self.utterances, "reference_boundaries": self.reference_boundaries,
            "hypothesis_boundaries": self.hypothesis_boundaries,
            "accuracy": {str(t): a for t, a in self.accuracy.items()}, "mae": self.mae,
            "f1_tolerance": self.f1_tolerance, "precision": self.precision, "recall": self.recall, "f1": self.f1,
            "labels": [{"label": s.label, "count": s.count, "matched": s.matched, "accuracy": s.accuracy,
                        "mae": s.mae} for s in self.labels],
            "problems": [{"path": p, "reason": r} for p, r in self.problems],
            "missing": list(self.missing), "extra": list(self.extra),
        }

    def format_table(self) -> str:
        """Markdown tables: the pooled scores, then the per-label breakdown; then what was not scored."""
        tol = _ms(self.f1_tolerance)
        lines = [f"{self.utterances} utterances scored on tier {self.tier!r}: {self.reference_boundaries} reference "
                 f"and {self.hypothesis_boundaries} hypothesis boundaries"]
        if self.utterances:
            lines += ["", "| metric | value |", "|---|---:|"]
            lines += [f"| accuracy within {_ms(t)} | {_pct(a)} |" for t, a in self.accuracy.items()]
            lines += [f"| MAE | {_ms(self.mae, 1)} |", f"| precision at {tol} | {_pct(self.precision)} |",
                      f"| recall at {tol} | {_pct(self.recall)} |", f"| F1 at {tol} | {_pct(self.f1)} |"]
            lines += ["", f"| label | boundaries | within {tol} | MAE |", "|---|---:|---:|---:|"]
            lines += [f"| {s.label} | {s.count} | {_pct(s.accuracy)} | {_ms(s.mae, 1)} |" for s in self.labels]
        for name, ids in (("missing hypotheses", self.missing), ("extra hypotheses", self.extra)):
            if ids:
                lines.append(f"{name} ({len(ids)}): " + ", ".join(ids))
        if self.problems:
            lines.append(f"problems ({len(self.problems)}):")
            lines += [f"  {path}: {reason}" for path, reason in self.problems]
        return "\n".join(lines)


def _ms(seconds: Optional[float], decimals: Optional[int] = None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.{decimals}f} ms" if decimals is not None else f"{seconds * 1000:g} ms"


def _pct(x: Optional[float]) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _number(x: float) -> Optional[float]:
    """``x`` as a float, ``None`` for NaN (JSON has no NaN)."""
    return None if math.isnan(x) else float(x)


# ----------------------------------------------------------------------------- checks and files
def _folder(path: object, name: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise HMMTypeError(f"{name} must be a path to a folder; got {type(path).__name__}")
    folder = Path(path)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise HMMValueError(f"{name} must be a folder of alignment files; {str(folder)!r} {what}")
    return folder


def _find(folder: Path, name: str) -> Tuple[Dict[str, Optional[Path]], List[Tuple[str, str]]]:
    """Utterance id -> its file (``None``: the id is in several subfolders, a problem)."""
    found: Dict[str, List[Path]] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in _SUFFIXES and path.is_file():
            found.setdefault(path.stem, []).append(path)
    if not found:
        raise HMMValueError(f"{name} {str(folder)!r} holds no alignment files (*.TextGrid or *.json, searched "
                            "recursively)")
    files: Dict[str, Optional[Path]] = {}
    problems = []
    for utt, paths in found.items():
        folders = sorted({str(p.parent) for p in paths})
        if len(folders) > 1:
            files[utt] = None
            problems += [(str(p), f"utterance id {utt!r} appears in {len(folders)} folders of {name} "
                                  f"({', '.join(folders)}); file names must be unique") for p in paths]
        else:
            files[utt] = min(paths, key=lambda p: _SUFFIXES[p.suffix.lower()])
    return files, problems


def _read(path: Path, tier: str) -> List[Segment]:
    """The segments of ``tier`` in ``path``; ``HMMValueError`` saying why not."""
    tiers = (read_textgrid if path.suffix.lower() == ".textgrid" else read_json)(path).tiers
    if tier not in tiers:
        raise HMMValueError(f"no tier {tier!r} (tiers: {', '.join(map(repr, tiers)) or 'none'})")
    if not tiers[tier]:
        raise HMMValueError(f"tier {tier!r} holds no labelled interval")
    return list(tiers[tier])


# ----------------------------------------------------------------------------- scores
def _per_label(refs, hyps, tolerance: float, fold) -> Tuple[List[LabelScore], int, int]:
    """Per-label scores (module docstring), and the numbers of ref and hyp boundaries."""
    stats: Dict[Hashable, list] = {}  # label -> [count, matched, sum |ref - hyp|, pairs]
    errors = [e for utt in boundary_errors(refs, hyps, fold=fold) for e in utt]
    for e in errors:
        s = stats.setdefault(END if e.label is None else e.label, [0, 0, 0.0, 0])
        s[0] += 1
        if e.error is not None:
            s[1] += int(abs(e.error) <= tolerance + EPS)
            s[2] += abs(e.error)
            s[3] += 1
    scores = [LabelScore(str(label), c, m, m / c, total / pairs if pairs else None)
              for label, (c, m, total, pairs) in stats.items()]
    n_hyp = sum(len(utt) for utt in boundary_errors(hyps, hyps))  # every hyp boundary, paired with itself
    return sorted(scores, key=lambda s: (-s.count, s.label)), len(errors), n_hyp


def evaluate_directories(
    reference_dir: PathLike,
    hypothesis_dir: PathLike,
    *,
    tier: str = "phones",
    tolerances: Sequence[float] = (0.01, 0.02, 0.025, 0.05),
    f1_tolerance: float = 0.02,
    fold: Optional[Callable[[Hashable], Hashable]] = None,
) -> AlignmentEvaluation:
    """Score the alignments in ``hypothesis_dir`` against those in ``reference_dir`` (module docstring).

    ``tolerances`` and ``f1_tolerance`` in seconds (> 0); ``fold`` maps labels before matching
    (e.g. :func:`~pytorch_hmm.metrics.strip_stress`). Raises ``HMMValueError`` for a folder that
    is missing or holds no alignment files and for bad arguments; bad files are listed in
    ``problems`` instead.
    """
    ref_folder, hyp_folder = _folder(reference_dir, "reference_dir"), _folder(hypothesis_dir, "hypothesis_dir")
    if not isinstance(tier, str) or not tier.strip():
        raise HMMValueError(f"tier must be a non-empty tier name such as 'phones' or 'words'; got {tier!r}")
    if isinstance(tolerances, numbers.Real) and not isinstance(tolerances, bool):
        tolerances = (tolerances,)
    if isinstance(tolerances, (str, bytes)) or not isinstance(tolerances, Sequence) or not tolerances:
        raise HMMValueError(f"tolerances must be a non-empty sequence of seconds; got {tolerances!r}")
    tols = tuple(check_number(t, "tolerances", positive=True, unit="seconds") for t in tolerances)
    f1_tol = check_number(f1_tolerance, "f1_tolerance", positive=True, unit="seconds")
    if fold is not None and not callable(fold):
        raise HMMValueError(f"fold must be None or a callable label -> label; got {fold!r}")

    ref_files, problems = _find(ref_folder, "reference_dir")
    hyp_files, hyp_problems = _find(hyp_folder, "hypothesis_dir")
    problems += hyp_problems
    result = AlignmentEvaluation(str(ref_folder), str(hyp_folder), tier, f1_tol, problems=problems,
                                 missing=[u for u in ref_files if u not in hyp_files],
                                 extra=[u for u in hyp_files if u not in ref_files])
    refs, hyps = [], []
    for utt in sorted(u for u in ref_files if u in hyp_files and ref_files[u] and hyp_files[u]):
        pair = []
        for path in (ref_files[utt], hyp_files[utt]):
            try:
                pair.append(_read(path, tier))
            except (OSError, ValueError) as err:  # HMMValueError from the readers, OS errors, parser errors
                problems.append((str(path), str(err)))
        if len(pair) == 2:
            refs.append(pair[0])
            hyps.append(pair[1])
    result.accuracy = {t: None for t in tols}
    if not refs:
        return result
    result.utterances = len(refs)
    result.accuracy = boundary_accuracy(refs, hyps, tols, fold=fold)
    result.mae = _number(boundary_mae(refs, hyps, fold=fold))
    result.precision, result.recall, result.f1 = boundary_f1(refs, hyps, f1_tol, fold=fold)
    result.labels, result.reference_boundaries, result.hypothesis_boundaries = _per_label(refs, hyps, f1_tol, fold)
    return result
