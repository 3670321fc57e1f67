"""Train a neural HMM (Mehta et al., 2022) on the bundled flite corpus: alignment, durations, synthesis.

Run::

    python examples/neural_hmm_tts.py                 # about 3 minutes on 2 cores
    python examples/neural_hmm_tts.py --steps 40 --out nhmm_out

1. Phone sequences (from the corpus's reference TextGrids) and 40-band log-mel frames (10 ms,
   utterance CMVN) of the 24 sample utterances; ``--holdout`` utterances stay out of training.
2. A :class:`pytorch_hmm.NeuralHMM` (2 states per phone, autoregressive) trained by Adam on the
   exact log-likelihood. ``alignment.png`` shows one utterance's state posteriors at the start,
   half way and at the end of training: they become monotonic and diagonal.
3. Durations per phone from ``align`` (Viterbi) against the reference phone durations: mean
   absolute error and boundary accuracy (``pytorch_hmm.metrics``), on training and held-out
   utterances.
4. ``generate`` for a held-out phone sequence at two speaking rates (duration thresholds 0.7 and
   0.3): ``generated.png`` and the durations printed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from pytorch_hmm import NeuralHMM  # noqa: E402
from pytorch_hmm.alignment import read_textgrid  # noqa: E402
from pytorch_hmm.data import sample_corpus  # noqa: E402
from pytorch_hmm.metrics import boundary_accuracy  # noqa: E402
from pytorch_hmm.speech import FeatureExtractor, load_audio  # noqa: E402

FRAME = 0.01


def load(holdout):
    """Per utterance: (id, phones, reference segments, features (T, D)), split into train and held out."""
    root = sample_corpus()
    extractor = FeatureExtractor(kind="log_mel", n_mels=40, cmvn="utterance")
    train, test = [], []
    for grid in sorted((root / "reference").glob("*/*.TextGrid")):
        segments = [s for s in read_textgrid(grid).tiers["phones"] if s.end > s.start]
        audio, rate = load_audio(root / grid.parent.name / f"{grid.stem}.flac", extractor.sample_rate)
        feats = extractor(audio, rate)
        (test if grid.stem in holdout else train).append((grid.stem, [s.unit for s in segments], segments, feats))
    return train, test


def batch(items, phone_ids):
    tokens = [torch.tensor([phone_ids[p] for p in phones]) for _, phones, _, _ in items]
    feats = [f for _, _, _, f in items]
    b, n, t = len(items), max(len(x) for x in tokens), max(len(f) for f in feats)
    tok = torch.zeros(b, n, dtype=torch.long)
    x = torch.zeros(b, t, feats[0].shape[1])
    for i, (tk, f) in enumerate(zip(tokens, feats)):
        tok[i, : len(tk)] = tk
        x[i, : len(f)] = f
    return tok, torch.tensor([len(tk) for tk in tokens]), x, torch.tensor([len(f) for f in feats])


def durations_report(model, items, phone_ids, name):
    """MAE of the phone durations (frames) and boundary accuracy at 20 / 50 ms against the reference."""
    tok, tl, x, fl = batch(items, phone_ids)
    durations, _ = model.align(tok, tl, x, fl)
    errors, acc = [], {0.02: [], 0.05: []}
    for i, (_, phones, segments, _) in enumerate(items):
        d = durations[i, : len(phones)].numpy()
        ref = np.array([round((s.end - s.start) / FRAME) for s in segments])
        errors += list(np.abs(d - ref))
        ends = np.cumsum(d) * FRAME
        hyp = [(p, float(e - dd * FRAME), float(e)) for p, dd, e in zip(phones, d, ends)]
        got = boundary_accuracy([(s.unit, s.start, s.end) for s in segments], hyp, (0.02, 0.05))
        for tol in acc:
            acc[tol].append(got[tol])
    print(f"{name}: {len(items)} utterances, phone duration MAE {np.mean(errors):.2f} frames, boundaries within "
          f"20 ms {np.mean(acc[0.02]):.1%}, within 50 ms {np.mean(acc[0.05]):.1%}")
    return float(np.mean(errors))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps (full batches)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--holdout", nargs="*", default=["awb_0007", "rms_0007", "slt_0007"])
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: a new temporary folder)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="neural_hmm_"))
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    train, test = load(set(args.holdout))
    phones = sorted({p for _, ph, _, _ in train + test for p in ph})
    phone_ids = {p: i for i, p in enumerate(phones)}
    print(f"{len(train)} training and {len(test)} held-out utterances, {len(phones)} phones, "
          f"{sum(len(f) for *_, f in train)} training frames")
    model = NeuralHMM(len(phones), train[0][3].shape[1], states_per_token=2, hidden_dim=args.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    data = batch(train, phone_ids)
    frames = float(data[3].sum())
    shown = batch(train[:1], phone_ids)

    def snapshot(step):  # the posteriors without the prenet's dropout
        model.eval()
        post = model.align(*shown)[1][0, : int(shown[3][0])].numpy()
        model.train()
        return step, post

    snapshots = [snapshot(0)]
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        opt.zero_grad()
        loss = -model(*data).sum() / frames
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        if step % 25 == 0 or step == args.steps:
            print(f"step {step}: log-likelihood per frame {-loss.item():.3f} ({time.perf_counter() - start:.0f} s)")
        if step in (args.steps // 2, args.steps):
            snapshots.append(snapshot(step))
    model.eval()
    durations_report(model, train, phone_ids, "training")
    if test:
        durations_report(model, test, phone_ids, "held out")

    fig, axes = plt.subplots(1, len(snapshots), figsize=(4 * len(snapshots), 3.4), squeeze=False)
    for ax, (step, post) in zip(axes[0], snapshots):
        ax.imshow(post.T, origin="lower", aspect="auto", cmap="magma", interpolation="nearest")
        ax.set_title(f"{train[0][0]}: state posteriors, step {step}")
        ax.set_xlabel("frame")
        ax.set_ylabel("state")
    fig.tight_layout()
    fig.savefig(out / "alignment.png", dpi=90)
    plt.close(fig)

    text = test[0] if test else train[0]
    tok, tl, _, _ = batch([text], phone_ids)
    fig, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    for ax, threshold in zip(axes, (0.7, 0.3)):
        x, length, durations = model.generate(tok, tl, duration_threshold=threshold, temperature=0.3, max_frames=2000,
                                              generator=torch.Generator().manual_seed(0), return_durations=True)
        per_phone = durations[0].view(-1, 2).sum(-1)
        print(f"generated {text[0]} phones at duration threshold {threshold}: {int(length[0])} frames "
              f"({int(length[0]) * FRAME:.2f} s; reference {len(text[3]) * FRAME:.2f} s); frames per phone "
              f"{per_phone.tolist()}")
        ax.imshow(x[0, : int(length[0])].T.numpy(), origin="lower", aspect="auto", cmap="magma")
        ax.set_title(f"generated log-mel, duration threshold {threshold} ({int(length[0])} frames)")
    axes[-1].set_xlabel("frame")
    fig.tight_layout()
    fig.savefig(out / "generated.png", dpi=90)
    plt.close(fig)
    print(f"wrote {out / 'alignment.png'} and {out / 'generated.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
