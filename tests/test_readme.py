"""The README's commands and examples work as written.

Each tested block carries a marker on the line before its fence, ``<!-- readme-test: NAME -->``,
and the tests pick blocks by that name (never by position), so inserting or reordering blocks
cannot make a test run the wrong one.
"""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


MARKED = re.compile(r"<!-- readme-test: ([\w-]+) -->\n```(\w+)\n(.*?)\n```", flags=re.S)
BLOCKS = {"main": "bash", "demo": "bash", "tests": "bash", "kernel": "python", "models": "python", "hsmm": "python",
          "alignment": "python", "graphs": "python", "metrics": "python", "speech": "python", "forced": "bash",
          "peers": "python", "streaming": "python",
          "distributed": "python", "export": "python"}


def _block(name: str) -> str:
    """The code of the README block marked ``name`` (exactly one, in the language of BLOCKS)."""
    found = [(lang, code) for marker, lang, code in MARKED.findall(README) if marker == name]
    assert len(found) == 1, f"README.md must hold exactly one block marked <!-- readme-test: {name} -->"
    lang, code = found[0]
    assert lang == BLOCKS[name], f"README block {name!r} must be ```{BLOCKS[name]}; got ```{lang}"
    return code


def _run_block(name: str) -> dict:
    scope: dict = {}
    exec(compile(_block(name), f"README.md[{name}]", "exec"), scope)
    return scope


def test_markers_name_known_blocks():
    """Every marker precedes a fenced block and names a block a test here runs."""
    markers = re.findall(r"<!-- readme-test: ([\w-]+) -->", README)
    assert sorted(markers) == sorted(BLOCKS)
    assert len(MARKED.findall(README)) == len(markers)


def test_ci_runs_the_readme_test_command():
    test_command = _block("tests").strip()
    assert test_command.endswith("python -m pytest")
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines


def test_main_command_aligns_the_sample_corpus(tmp_path):
    """The README's first command: after the install, ``pytorch-hmm demo hmm_demo/`` trains on
    the bundled sample corpus, writes its TextGrids and a plot and scores it."""
    import shutil

    command = _block("main").strip()
    assert command.startswith(_block("tests").strip().rsplit(' ".[dev]"', 1)[0])  # the same install
    demo = command.rsplit("&& ", 1)[1].split()
    assert demo[:2] == ["pytorch-hmm", "demo"]
    exe = shutil.which("pytorch-hmm")
    argv = ([exe] if exe else [sys.executable, "-m", "pytorch_hmm.cli"]) + demo[1:]
    proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / demo[2]
    assert len(list(out.glob("*/*.TextGrid"))) == 24
    assert (out / "alignment.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "aligned 24 utterances, skipped 0" in proc.stdout
    within_20 = float(re.search(r"within 20 ms\D*?([\d.]+)\s*%", proc.stdout).group(1))
    assert within_20 > 80.0  # 87.7 % measured; flat start on 83 s of audio


def test_demo_command_runs():
    script = _block("demo").strip()
    assert script.startswith("python ")
    out = subprocess.run([sys.executable, *script.split()[1:]], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "4 sequences from a 5-state left-to-right Gaussian HMM" in out
    accuracies = [float(a) for a in re.findall(r"Viterbi accuracy=([\d.]+)%", out)]
    assert len(accuracies) == 4 and min(accuracies) > 90.0


def test_python_example_runs():
    scope = _run_block("kernel")
    import torch

    assert scope["log_z"].shape == (2,) and torch.isfinite(scope["log_z"]).all()
    gamma = scope["gamma"]
    sums = gamma.sum(-1)
    assert torch.allclose(sums[0], torch.ones(100), atol=1e-4)
    assert torch.allclose(sums[1, :80], torch.ones(80), atol=1e-4) and (sums[1, 80:] == 0).all()
    paths = scope["paths"]
    assert paths[0, 0] == 0 and paths[0, -1] == 4 and paths[1, 79] == 4 and (paths[1, 80:] == -1).all()


def test_models_example_runs():
    scope = _run_block("models")
    import torch

    history, paths, states = scope["history"], scope["paths"], scope["states"]
    assert all(b >= a - 1e-3 for a, b in zip(history, history[1:]))  # float32 EM: monotone up to rounding
    # decoded states agree with the truth up to a relabelling of the states
    agreement = max(
        (paths == torch.tensor(perm)[states]).double().mean().item()
        for perm in __import__("itertools").permutations(range(3))
    )
    assert agreement > 0.9
    assert scope["gamma"].shape == (8, 200, 3) and scope["loss"].requires_grad


def test_export_example_runs():
    scope = _run_block("export")
    import torch

    want_paths, want_scores = scope["model"].viterbi(scope["x"], scope["lengths"])
    assert torch.equal(scope["paths"], want_paths) and (scope["paths"][3, 1:] == -1).all()
    torch.testing.assert_close(scope["scores"], want_scores, rtol=1e-5, atol=0)


def test_hsmm_example_runs():
    scope = _run_block("hsmm")
    import torch

    history, segments, states, model = scope["history"], scope["segments"], scope["states"], scope["model"]
    assert all(b >= a - 1e-3 for a, b in zip(history, history[1:]))
    assert len(segments) == 16 and segments[0][0][1] == 0 and segments[0][-1][2] == 120
    # fitted mean durations match the truth's (about 3, 7 and 13 frames) up to a relabelling of the states
    fitted = torch.sort(model.expected_durations().detach()).values
    true = torch.sort(scope["truth"].expected_durations().detach()).values
    torch.testing.assert_close(fitted, true, rtol=0.1, atol=0)
    assert agreement_up_to_relabelling(scope["paths"], states) > 0.9
    assert scope["phones"].num_states == 4


def agreement_up_to_relabelling(paths, states) -> float:
    import itertools

    import torch

    k = int(states.max()) + 1
    return max((paths == torch.tensor(perm)[states]).double().mean().item() for perm in itertools.permutations(range(k)))


def test_alignment_example_runs():
    scope = _run_block("alignment")
    import torch

    r = scope["r"]
    assert r.cost.shape == (2,) and torch.isfinite(r.cost).all() and len(r.paths) == 2
    assert r.paths[1][-1].tolist() == [89, 79]  # ends at the last valid frames of pair 1
    assert scope["pred"].grad is not None and scope["logits"].grad is not None
    spans = scope["spans"]
    assert [s.token for s in spans[0]] == [1, 2, 2, 3] and [s.token for s in spans[1]] == [4, 5]
    assert spans[1][-1].end <= 40


def test_metrics_example_runs():
    scope = _run_block("metrics")
    acc = scope["boundary_accuracy"](scope["ref"], scope["hyp"], (0.01, 0.02), fold=scope["strip_stress"])
    assert acc == {0.01: 0.75, 0.02: 1.0}
    assert float(scope["mcd_db"]) > 0
    rmse = float(scope["f0_rmse"](scope["f0_ref"], scope["f0_syn"], unit="cents"))
    assert abs(rmse - 100) < 10


def test_speech_example_runs():
    scope = _run_block("speech")
    utts, feats, lengths = scope["utts"], scope["feats"], scope["lengths"]
    assert [u.text for u in utts] == ["She had your dark suit.", "Don't ask me to carry an oily rag."]
    assert scope["phones"][0] == ("SH", "IY", "HH", "AE", "D", "Y", "AO", "R", "D", "AA", "R", "K", "S", "UW", "T")
    assert feats.shape == (2, int(lengths.max()), 39)
    truth = scope["truth"]
    assert [iv.phone for iv in truth] == ["sil", *scope["phones"][0], "sil"]
    # the true phone intervals cover the audio the features were computed from
    assert int(lengths[0]) == 1 + round(truth[-1].end * 16000) // 160


def test_graphs_example_runs():
    scope = _run_block("graphs")
    import torch

    graph, unit_scores = scope["graph"], scope["unit_scores"]
    assert [p.unit for p in scope["phones"]] == ["k", "ae", "t"]
    starts = [p.start for p in scope["phones"]] + [scope["phones"][-1].end]
    assert starts == sorted(starts) and starts[0] == 0.0 and abs(starts[-1] - 0.40) < 1e-9
    read = scope["read_textgrid"](scope["textgrid"]).tiers["phones"]
    assert [(p.unit, p.start, p.end) for p in read] == [(p.unit, p.start, p.end) for p in scope["phones"]]
    assert torch.allclose(scope["log_z"], graph.log_partition(unit_scores), atol=1e-4)
    assert (graph.transitions.predecessors == torch.tensor([[0, -1], [0, 1], [1, 2], [2, 3], [3, 4]])).all()


def test_forced_alignment_commands_run(tmp_path):
    """The README's three commands, as written, in a scratch folder holding a copy of the fixtures."""
    import shutil

    shutil.copytree(ROOT / "tests" / "fixtures", tmp_path / "tests" / "fixtures")
    exe = shutil.which("pytorch-hmm")
    for line in _block("forced").splitlines():
        command = line.split("#")[0].split()
        assert command[0] == "pytorch-hmm"
        argv = [exe] if exe else [sys.executable, "-m", "pytorch_hmm.cli"]
        proc = subprocess.run(argv + command[1:], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
    for name in ("awb_0000", "awb_0001"):
        assert (tmp_path / "aligned" / "awb" / f"{name}.TextGrid").is_file()
        assert (tmp_path / "aligned" / "awb" / f"{name}.json").is_file()
    assert (tmp_path / "aligned" / "words.ctm").is_file() and (tmp_path / "model.pt").is_file()


def test_peers_example_runs():
    """The conventions block: hmmlearn's layout, librosa's band as ours, CTC batch-first."""
    import librosa
    import numpy as np
    import torch
    import torch.nn.functional as F

    scope = _run_block("peers")
    model, X, lengths = scope["model"], scope["X"], scope["lengths"]
    hmmlearn = __import__("pytest").importorskip("hmmlearn.hmm")
    ref = hmmlearn.GaussianHMM(2, "diag", init_params="")
    ref.startprob_, ref.transmat_ = model.startprob_, model.transmat_
    ref.means_, ref.covars_ = model.means_, model.covars_
    assert abs(scope["model"].score(X, lengths) - ref.score(X, lengths)) < 1e-8
    assert np.abs(model.predict_proba(X, lengths).numpy() - ref.predict_proba(X, lengths)).max() < 1e-8
    x, y = scope["x"][0].numpy(), scope["y"][0].numpy()
    cost = np.sqrt(((x[:, None] - y[None]) ** 2).sum(-1))
    d, _ = librosa.sequence.dtw(C=cost, band_rad=0.25, global_constraints=True)
    assert abs(float(scope["r"].cost[0]) - d[-1, -1]) < 1e-9
    want = F.ctc_loss(scope["log_probs"].transpose(0, 1), torch.tensor([[1, 2], [3, 3]]), torch.tensor([30, 20]),
                      torch.tensor([2, 2]))
    assert abs(float(scope["loss"]) - float(want)) < 1e-5


def test_streaming_example_runs():
    scope = _run_block("streaming")
    assert len(scope["decided"]) == 500


def test_distributed_block_fits_alone():
    """Without torchrun the block runs as one process: every sequence is this rank's shard."""
    scope = _run_block("distributed")
    assert len(scope["history"]) >= 2 and scope["history"][-1] >= scope["history"][0]
