"""Threads of the compiled loops: the caller's torch thread count is honoured and never changed.

numba's OpenMP layer sets the calling thread's OpenMP thread count when its pool starts and at
each parallel launch; torch reads the same count. Before kernel/parallel.py, the first
parallel call turned a user's ``torch.set_num_threads(1)`` into 2. Each test runs in a fresh
interpreter, because whether numba's pool has started is process state.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

pytest.importorskip("numba")

from pytorch_hmm.kernel import numba_loops, parallel  # noqa: E402


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.parametrize("threads", [1, 2])
def test_the_users_torch_thread_count_survives_every_compiled_loop(threads):
    out = _run(f"""
        import torch
        torch.set_num_threads({threads})
        import pytorch_hmm
        from pytorch_hmm import kernel
        from pytorch_hmm.alignment import dtw, soft_dtw
        from pytorch_hmm.transitions import Banded, Dense, Sparse
        seen = [torch.get_num_threads()]
        e = torch.randn(8, 400, 16)
        init = torch.zeros(16)
        for trans in (Dense(torch.randn(16, 16)), Banded(torch.randn(16, 2)),
                      Sparse(torch.randint(-1, 16, (16, 3)), torch.randn(16, 3))):
            kernel.marginals(e, trans, init)
            kernel.viterbi(e, trans, init)
            seen.append(torch.get_num_threads())
        x = torch.randn(6, 300, 5, dtype=torch.float64)
        dtw(x, x.flip(1))
        dtw(torch.cdist(x, x.flip(1)), distance="precomputed")
        soft_dtw(x.requires_grad_(), x.detach().flip(1), 1.0).sum().backward()
        seen.append(torch.get_num_threads())
        print(*seen)
    """)
    assert set(out.split()) == {str(threads)}, f"torch.get_num_threads() went {out} (set {threads})"


def test_threads_follow_torch_and_the_size_of_the_work(monkeypatch):
    monkeypatch.setattr(parallel, "idle_cpus", lambda: 8)  # a quiet machine, whatever runs beside the tests
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert parallel.threads_for(batch=64, work=10**9) == 1
        torch.set_num_threads(2)
        assert parallel.threads_for(batch=1, work=10**9) == 1  # one item: nothing to share
        assert parallel.threads_for(batch=64, work=parallel.SERIAL_BELOW - 1) == 1
        import numba

        assert parallel.threads_for(batch=64, work=10**9) == min(2, numba.config.NUMBA_NUM_THREADS)
        monkeypatch.setattr(parallel, "idle_cpus", lambda: 1)  # every CPU busy: no second thread to wait for
        assert parallel.threads_for(batch=64, work=10**9) == 1
    finally:
        torch.set_num_threads(before)


def test_idle_cpus_counts_the_runnable_tasks_of_other_processes(monkeypatch):
    from pytorch_hmm import threads

    usable = threads._usable_cpus()
    monkeypatch.setattr(threads, "_IDLE_CACHE", [-1.0, 0])
    assert 1 <= threads.idle_cpus() <= usable
    assert threads._own_running() >= 1  # the caller itself is running
    for running, own, idle in [(1, 1, usable), (3, 2, max(1, usable - 1)), (usable + 5, 1, 1)]:
        monkeypatch.setattr(threads, "_IDLE_CACHE", [-1.0, 0])
        monkeypatch.setattr(threads, "_running", lambda path, r=running: r)
        monkeypatch.setattr(threads, "_own_running", lambda o=own: o)
        assert threads.idle_cpus() == idle, (running, own)
    # read at most every 50 ms: a fresh cached value is returned as it is
    import time

    monkeypatch.setattr(threads, "_IDLE_CACHE", [time.monotonic(), 7])
    assert threads.idle_cpus() == 7


def test_small_work_or_a_busy_machine_runs_torch_on_one_thread_and_restores_the_count(monkeypatch):
    from pytorch_hmm import threads
    from pytorch_hmm.threads import SERIAL_BELOW, torch_threads_for

    monkeypatch.setattr(threads, "idle_cpus", lambda: 2)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with torch_threads_for(SERIAL_BELOW - 1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with torch_threads_for(SERIAL_BELOW):
            assert torch.get_num_threads() == 2
        monkeypatch.setattr(threads, "idle_cpus", lambda: 1)
        with torch_threads_for(SERIAL_BELOW):  # large, but no idle CPU for the second thread
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), torch_threads_for(10):
            raise RuntimeError("restored on errors too")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_em_on_a_small_problem_uses_one_torch_thread_and_gives_the_count_back(monkeypatch):
    from pytorch_hmm import HMM
    from pytorch_hmm.emissions import Gaussian

    model = HMM(Gaussian(3, 1))
    seen = []
    accumulate = model.accumulate
    monkeypatch.setattr(model, "accumulate", lambda *a: (seen.append(torch.get_num_threads()), accumulate(*a))[1])
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        model.fit(torch.randn(1, 200, 1), max_iter=3, verbose=False)
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_one_thread_and_two_threads_agree():
    """The same compiled loop on 1 and 2 threads: equal outputs to the last bit."""
    import numba
    import numpy as np

    from pytorch_hmm.kernel.factors import dense_forward_factors
    from pytorch_hmm.semiring import underflow_threshold

    rng = np.random.default_rng(0)
    b, t, k = 6, 50, 5
    e = rng.normal(size=(b, t, k))
    trans = torch.log_softmax(torch.from_numpy(rng.normal(size=(1, 1, k, k))), -1)
    matrix, shift = dense_forward_factors(trans)
    outs = []
    before = numba.get_num_threads()
    try:
        for n in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(n)
            alpha, log_norm = np.empty((b, t, k)), np.empty((b, t))
            numba_loops._forward_dense.compiled(e, matrix.numpy(), trans.numpy(), shift.numpy(),
                                                underflow_threshold(torch.float64, k), np.zeros((b, k)),
                                                np.full(b, t, np.int64), alpha, log_norm)
            outs.append((alpha, log_norm))
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])
