"""torch.distributed: EM and corpus alignment on 2 gloo ranks (torchrun on localhost) equal one
process on all the data; a failing or stuck rank stops the job with a clear message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import distributed_worker as worker
from bad_corpus import corpus_with_bad_items
from pytorch_hmm.alignment import AcousticModel, read_ctm, read_textgrid
from pytorch_hmm.distributed import RankFailure, Stage, reduced_bytes, shard, sum_across_ranks, sum_by_key
from pytorch_hmm.errors import HMMValueError

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="needs torch.distributed with gloo")

WORKER = Path(__file__).with_name("distributed_worker.py")
FIXTURES = Path(__file__).parent / "fixtures" / "folder"


def _torchrun(*args: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _wait(proc: subprocess.Popen, timeout: float = 240) -> tuple:
    started = time.perf_counter()
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out, time.perf_counter() - started


def test_without_a_process_group_everything_is_local():
    stats = {"a": torch.ones(3), "b": [torch.zeros(2, 2, dtype=torch.float64)]}
    assert sum_across_ranks(stats) is stats and torch.equal(stats["a"], torch.ones(3))
    assert reduced_bytes(stats) == 8 * 7
    assert shard(list(range(5))) == [0, 1, 2, 3, 4]
    assert shard(list(range(5)), 1, 2) == [1, 3] and shard(list(range(5)), 0, 2) == [0, 2, 4]
    assert sum_by_key({"spk": torch.ones(2)})["spk"].tolist() == [1.0, 1.0]
    with pytest.raises(HMMValueError, match=r"rank must be in \[0, 2\); got 2"):
        shard([1, 2], 2, 2)
    with pytest.raises(HMMValueError, match="statistics must be tensors in nested dicts, lists or tuples; got str"):
        reduced_bytes({"a": "text"})
    with pytest.raises(KeyError):  # alone, a failing stage raises the error itself at once
        with Stage("local"):
            raise KeyError("boom")
    with pytest.raises(KeyError):  # so does work a rank does on its own
        with Stage("local", collective=False) as stage:
            raise KeyError("boom")
    stage.sync()  # no collective: nothing to wait for


def test_rank_failure_names_the_ranks_and_their_errors():
    err = RankFailure("EM iteration", {1: "HMMValueError: bad", 3: "OSError: disk full"})
    assert str(err) == ("EM iteration failed on ranks 1, 3 (rank 1: HMMValueError: bad; rank 3: OSError: disk full); "
                        "every rank stopped")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The three worker scenarios side by side (the stuck one mostly sleeps)."""
    out = tmp_path_factory.mktemp("ranks")
    procs = {name: _torchrun(str(WORKER), name, str(out)) for name in ("fit", "fail", "hang")}
    return out, {name: _wait(proc) for name, proc in procs.items()}


def test_two_ranks_fit_the_parameters_one_process_fits_on_all_the_data(runs):
    out, results = runs
    code, log, _ = results["fit"]
    assert code == 0, log
    expected = worker.fit_all(worker.dataset())
    for rank in (0, 1):
        got = torch.load(out / f"fit-rank{rank}.pt")
        for name, ref in expected.items():
            assert got[name]["state"].keys() == ref["state"].keys()
            for key, value in ref["state"].items():
                torch.testing.assert_close(got[name]["state"][key], value, rtol=0, atol=1e-6, msg=f"{name}.{key}")
            np.testing.assert_allclose(got[name]["history"], ref["history"], rtol=1e-9, err_msg=name)
    ranks = [torch.load(out / f"fit-rank{r}.pt") for r in (0, 1)]
    for name in expected:  # bit-identical across ranks
        for key, value in ranks[0][name]["state"].items():
            assert torch.equal(value, ranks[1][name]["state"][key]), (name, key)


def test_a_failing_rank_stops_every_rank_with_its_message(runs):
    out, results = runs
    code, log, seconds = results["fail"]
    assert code != 0
    message = ("EM iteration (E-step) failed on rank 1 (rank 1: HMMValueError: sequences [6] of a batch have zero "
               "likelihood under the model; EM cannot use them); every rank stopped")
    written = [out / f"fail-rank{r}.txt" for r in (0, 1)]
    assert any(p.exists() for p in written), log
    for path in written:  # torchrun may end a rank once the other has exited
        if path.exists():
            assert path.read_text() == message
    assert (out / "fail-rank0.txt").exists(), "rank 0 (which did not fail) must stop with the message, not hang"
    empty = ("EM data failed on rank 1 (rank 1: HMMValueError: data must hold at least one sequence; got an empty "
             "list); every rank stopped")
    assert (out / "empty-rank0.txt").read_text() == empty


def test_a_stuck_rank_ends_the_job_after_the_timeout(runs):
    out, results = runs
    code, log, seconds = results["hang"]
    assert code != 0
    text = (out / "hang-rank0.txt").read_text()
    assert "Timed out" in text or "timed out" in text.lower(), text
    assert seconds < 100, "the 5 s timeout, not rank 1's 120 s sleep, ended the job"


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """Four fixture utterances of two speakers, one corrupt file and one utterance too short for its words."""
    return corpus_with_bad_items(tmp_path / "corpus", ("corrupt", "short"))


def test_cli_align_on_two_ranks_equals_one_process(corpus: Path, tmp_path: Path):
    args = ["--train", "--format", "textgrid,ctm", "--quiet", "--log-format", "json"]
    one = subprocess.Popen([sys.executable, "-m", "pytorch_hmm.cli", "align", str(corpus), str(tmp_path / "one"),
                            *args, "--save-model", str(tmp_path / "one.pt")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    two = _torchrun("-m", "pytorch_hmm.cli", "align", str(corpus), str(tmp_path / "two"), *args,
                    "--save-model", str(tmp_path / "two.pt"), "--timeout", "120")
    out_one, err_one = one.communicate(timeout=300)
    code, log, _ = _wait(two, 300)
    assert one.returncode == 0, err_one
    assert code == 0, log
    summary_one = json.loads(out_one)
    summaries = [json.loads(line) for line in log.splitlines() if line.startswith('{"command"')]
    assert len(summaries) == 1, log  # rank 0 prints the merged summary, once
    summary_two = summaries[0]
    assert summary_two["aligned"] == summary_one["aligned"] == 4
    skipped = sorted((s["item"], s["reason"]) for s in summary_two["skipped"])
    assert skipped == sorted((s["item"], s["reason"]) for s in summary_one["skipped"])
    assert [item for item, _ in skipped] == ["corrupt", "short"]  # each bad item reported once
    assert summary_two["audio_seconds"] == pytest.approx(summary_one["audio_seconds"])

    model_one, _ = AcousticModel.load(tmp_path / "one.pt")
    model_two, _ = AcousticModel.load(tmp_path / "two.pt")
    # a float32 model after 36 EM iterations: the ranks batch (and pad) their utterances differently,
    # so float32 rounding differs at 1e-7 per iteration (measured: at most 1.1e-5 in a log-variance)
    for key, value in model_one.state_dict().items():
        torch.testing.assert_close(model_two.state_dict()[key], value, rtol=0, atol=5e-5, msg=key)

    grids_one = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.TextGrid"))
    grids_two = sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*.TextGrid"))
    assert grids_one == grids_two and len(grids_one) == 4  # none lost, none twice
    for rel in grids_one:
        a, b = read_textgrid(tmp_path / "one" / rel), read_textgrid(tmp_path / "two" / rel)
        for tier in ("words", "phones"):
            assert [(s.unit, s.start, s.end) for s in a.tiers[tier]] == [(s.unit, s.start, s.end) for s in b.tiers[tier]]
    for name in ("words.ctm", "phones.ctm"):
        assert (tmp_path / "one" / name).read_text() == (tmp_path / "two" / name).read_text()
        assert sorted(read_ctm(tmp_path / "two" / name)) == ["awb_0000", "awb_0001", "slt_0000", "slt_0001"]
