"""Fit quality on hmmlearn's issue #410 data: the variance floor and the sequence order.

hmmlearn's own test data for its issue #410 (``EXAMPLE_SEQUENCES_ISSUE_410_PRUNED`` in the
installed ``hmmlearn.tests.test_gmm_hmm_multisequence``: 6 sequences of 5-D features whose
variances are about 1e-4..5e-3) is fitted by a 2-state, 2-component diagonal GMM-HMM in every
order of the sequences, in this one process, by:

* hmmlearn's ``GMMHMM`` (k-means init with ``random_state=1234``, as its test);
* ours with the default variance floor (``min_covar=None``: 1e-3 of the data variance);
* ours with the former default, an absolute floor ``min_covar=1e-3``.

Printed per fitter: the final total log-likelihood (min, median, max over the orders) and its
spread (max - min) over the orders. Run: ``python benchmarks/bench_issue410.py``.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import warnings

import numpy as np
import torch


def _data():
    from hmmlearn.tests.test_gmm_hmm_multisequence import EXAMPLE_SEQUENCES_ISSUE_410_PRUNED

    return [np.asarray(s, dtype=np.float64) for s in EXAMPLE_SEQUENCES_ISSUE_410_PRUNED]


def _hmmlearn(seqs) -> float:
    from hmmlearn import hmm

    x, lengths = np.concatenate(seqs), [len(s) for s in seqs]
    model = hmm.GMMHMM(n_components=2, n_mix=2, covariance_type="diag", n_iter=100, init_params="mcw", random_state=1234)
    model.startprob_, model.transmat_ = np.full(2, 0.5), np.full((2, 2), 0.5)
    model.fit(x, lengths)
    return float(model.score(x, lengths))


def _ours(seqs, **floor) -> float:
    from pytorch_hmm import MixtureGaussianHMM

    model = MixtureGaussianHMM(2, 2, seqs[0].shape[1], "diag", dtype=torch.float64, **floor)
    x = [torch.from_numpy(s) for s in seqs]
    model.fit(x, max_iter=100, verbose=False, generator=torch.Generator().manual_seed(1234))
    return float(model.score(np.concatenate(seqs), [len(s) for s in seqs]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    logging.getLogger("hmmlearn").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    seqs = _data()
    orders = list(itertools.permutations(range(len(seqs))))
    var = np.concatenate(seqs).var(0)
    print(f"{len(seqs)} sequences, {sum(map(len, seqs))} frames, D = {seqs[0].shape[1]}, "
          f"data variances {var.min():.2e}..{var.max():.2e}; {len(orders)} orders")
    fitters = {
        "hmmlearn GMMHMM": _hmmlearn,
        "ours, default floor": _ours,
        "ours, min_covar=1e-3": lambda s: _ours(s, min_covar=1e-3),
    }
    print(f"{'fitter':24s} {'min':>11s} {'median':>11s} {'max':>11s} {'spread':>9s}")
    for name, fit in fitters.items():
        scores = np.array([fit([seqs[i] for i in order]) for order in orders])
        print(f"{name:24s} {scores.min():11.3f} {np.median(scores):11.3f} {scores.max():11.3f} "
              f"{scores.max() - scores.min():9.3f}")


if __name__ == "__main__":
    main()
