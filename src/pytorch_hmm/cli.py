"""The ``pytorch-hmm`` command: train an aligner on a corpus and align it, as MFA users do.

::

    pytorch-hmm align CORPUS OUT_DIR --train [--lexicon FILE]   # train on CORPUS, then align it
    pytorch-hmm align CORPUS OUT_DIR --model MODEL              # align with a trained model
    pytorch-hmm train CORPUS MODEL [--lexicon FILE]             # train and save a model

``CORPUS`` is a folder of ``<speaker>/<id>.wav`` + ``<id>.lab`` (or ``.txt``) files, or a flat
folder of them; the lexicon is an MFA dictionary (default: CMUdict, stress folded). A summary
ends every run: aligned and skipped utterances with reasons, and the speed as times real time.
Exit status: 0 when at least one utterance was aligned (or the model was saved), 1 when nothing
could be (the summary says why), 2 for a wrong command line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from . import __version__
from .errors import HMMValueError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pytorch-hmm", description="HMM forced alignment of speech corpora.")
    parser.add_argument("--version", action="version", version=f"pytorch-hmm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("corpus", type=Path, help="folder of <speaker>/<id>.wav + <id>.lab (or .txt) files")
        p.add_argument("--lexicon", type=Path, default=None, help="MFA-format dictionary (default: CMUdict, stress folded)")
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    align = sub.add_parser("align", help="align a corpus (training on it first with --train)")
    common(align)
    align.add_argument("out_dir", type=Path, help="where <speaker>/<id>.TextGrid files are written")
    how = align.add_mutually_exclusive_group(required=True)
    how.add_argument("--train", action="store_true", help="train a model on the corpus, then align it")
    how.add_argument("--model", type=Path, help="a model saved by 'pytorch-hmm train'")
    align.add_argument("--output-format", default="textgrid",
                       help="comma-separated: textgrid, json, ctm (default textgrid)")
    align.add_argument("--save-model", type=Path, default=None, help="with --train: also save the model here")
    train = sub.add_parser("train", help="train a model on a corpus and save it")
    common(train)
    train.add_argument("model", type=Path, help="the model file to write")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except HMMValueError as err:
        print(f"pytorch-hmm: error: {err}", file=sys.stderr)
        return 1


def _run(args) -> int:
    from . import aligner
    from .alignment import AcousticModel

    if not args.corpus.is_dir():
        raise HMMValueError(f"corpus must be a folder; got {str(args.corpus)!r}")
    progress = not args.quiet
    report = aligner.RunReport()
    lexicon = aligner.lexicon_from(args.lexicon)
    if args.command == "align" and args.model is not None:
        model, settings = AcousticModel.load(args.model)
        extractor = aligner.default_extractor(settings)
    else:
        model, extractor = None, aligner.default_extractor()
    prepared = aligner.prepare(aligner.open_corpus(args.corpus), lexicon, extractor, report, progress=progress)
    if not prepared:
        print(report.summary())
        print("pytorch-hmm: error: no usable utterance in the corpus", file=sys.stderr)
        return 1
    if model is None:
        model = aligner.train(prepared, lexicon, report, progress=progress)
        path = args.model if args.command == "train" else args.save_model
        if path is not None:
            model.save(path, features=aligner.extractor_settings(extractor))
    if args.command == "train":
        print(report.summary())
        print(f"model written to {args.model}")
        return 0
    formats = [f.strip().lower() for f in args.output_format.split(",") if f.strip()]
    aligner.align(model, prepared, args.out_dir, report, formats=formats, progress=progress)
    print(report.summary())
    return 0 if report.aligned else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
