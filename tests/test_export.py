"""Exported Viterbi decoders (issue 21): ``export_viterbi`` writes a ``torch.export`` program that
plain ``torch`` loads and runs (in a subprocess where ``pytorch_hmm`` and numba cannot be imported)
with the results of ``model.viterbi``, for any batch size and length; ``ViterbiDecoder`` (the
kernel's traceable Viterbi) equals ``kernel.viterbi`` on every storage."""

import subprocess
import sys
import textwrap

import pytest
import torch

import pytorch_hmm as ph
from pytorch_hmm import kernel
from pytorch_hmm.emissions import Categorical, Gaussian
from pytorch_hmm.errors import HMMTypeError, HMMValueError
from pytorch_hmm.transitions import Banded, Sparse

# (B, T) shapes of the padded test batches: sizes 1 and 2 (which export treats specially) and a longer one
SHAPES = [(1, 1), (3, 2), (1, 7), (4, 31)]

RUNNER = textwrap.dedent("""
    import sys

    class Blocked:  # the program must need neither pytorch_hmm nor numba
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("pytorch_hmm", "numba"):
                raise ImportError(f"{name} is blocked")

    sys.meta_path.insert(0, Blocked())
    import torch

    cases = torch.load(sys.argv[1])
    out = {}
    for name, batches in cases.items():
        decoder = torch.export.load(sys.argv[2] + "/" + name + ".pt2").module()
        out[name] = [decoder(x, lengths) for x, lengths in batches]
    assert "pytorch_hmm" not in sys.modules and "numba" not in sys.modules
    torch.save(out, sys.argv[3])
""")


def _gaussian_hmm() -> ph.HMM:
    g = torch.Generator().manual_seed(0)
    emission = Gaussian(4, 3, means=torch.randn(4, 3, generator=g) * 2, covars=torch.rand(4, 3, generator=g) + 0.5)
    return ph.HMM(emission, transitions=torch.softmax(torch.randn(4, 4, generator=g), -1))


def _mixture_hmm() -> ph.MixtureGaussianHMM:
    g = torch.Generator().manual_seed(1)
    d = torch.float64
    return ph.MixtureGaussianHMM(5, 2, 3, transitions="left_to_right", final="last", dtype=d,
                                 means=torch.randn(5, 2, 3, generator=g, dtype=d) * 2,
                                 covars=torch.rand(5, 2, 3, generator=g, dtype=d) + 0.5,
                                 weights=torch.full((5, 2), 0.5, dtype=d))


def _batches(model, seed: int):
    """Padded batches with random lengths (the first item full) and NaN in every padded frame."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for b, t in SHAPES:
        x = torch.randn(b, t, 3, generator=g, dtype=model.emission.loc.dtype) * 2
        lengths = torch.randint(1, t + 1, (b,), generator=g)
        lengths[0] = t
        x[torch.arange(t)[None, :] >= lengths[:, None]] = float("nan")
        out.append((x, lengths))
    return out


def test_exported_programs_run_without_the_package_and_match_viterbi(tmp_path):
    """Float32 Gaussian HMM (dense) and float64 GMM-HMM (left-to-right, end in the last state)."""
    models = {"gaussian": _gaussian_hmm(), "mixture": _mixture_hmm()}
    cases = {name: _batches(model, seed) for seed, (name, model) in enumerate(models.items())}
    for name, model in models.items():
        program = ph.export_viterbi(model, tmp_path / f"{name}.pt2")
        assert isinstance(program, torch.export.ExportedProgram)
    torch.save(cases, tmp_path / "cases.pt")
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(tmp_path / "cases.pt"), str(tmp_path), str(tmp_path / "out.pt")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    results = torch.load(tmp_path / "out.pt")
    for name, model in models.items():
        rtol = 1e-5 if model.emission.loc.dtype == torch.float32 else 1e-10
        for (x, lengths), (paths, scores) in zip(cases[name], results[name]):
            want_paths, want_scores = model.viterbi(x, lengths)
            assert paths.dtype == torch.int64 and paths.shape == x.shape[:2]
            assert torch.equal(paths, want_paths), (name, x.shape)
            torch.testing.assert_close(scores, want_scores, rtol=rtol, atol=0)


@pytest.mark.parametrize("storage", ["dense", "banded", "sparse"])
def test_viterbi_decoder_equals_the_kernel(storage):
    g = torch.Generator().manual_seed(2)
    k = 5
    if storage == "dense":
        trans = torch.randn(k, k, generator=g, dtype=torch.float64).log_softmax(-1)
    elif storage == "banded":
        trans = Banded(torch.randn(k, 3, generator=g, dtype=torch.float64).log_softmax(-1))
    else:  # a parallel edge (slots 0 and 1 of state 2 both from state 1) and unused slots
        preds = torch.tensor([[0, -1, -1], [0, 1, -1], [1, 1, 2], [2, 3, 0], [3, 4, -1]])
        trans = Sparse(preds, torch.randn(k, 3, generator=g, dtype=torch.float64).log_softmax(-1))
    log_init = torch.randn(k, generator=g, dtype=torch.float64).log_softmax(-1)
    log_final = torch.randn(k, generator=g, dtype=torch.float64)
    decoder = kernel.ViterbiDecoder(trans, log_init, log_final)
    e = torch.randn(3, 9, k, generator=g, dtype=torch.float64)
    lengths = torch.tensor([9, 4, 1])
    paths, scores = decoder(e, lengths)
    want_paths, want_scores = kernel.viterbi(e, trans, log_init, lengths, log_final)
    assert torch.equal(paths, want_paths)
    torch.testing.assert_close(scores, want_scores, rtol=1e-12, atol=0)


def test_export_rejects_unsupported_models():
    with pytest.raises(HMMTypeError, match="model must be a pytorch_hmm HMM or MixtureGaussianHMM .*; got HSMM"):
        ph.export_viterbi(ph.HSMM(Gaussian(3, 2), ph.durations.Poisson(3, 5)))
    with pytest.raises(HMMTypeError, match="model.emission must be a Gaussian or GaussianMixture .*; got Categorical"):
        ph.export_viterbi(ph.HMM(Categorical(3, 4)))
    with pytest.raises(HMMValueError, match="model.emission must have missing='error'"):
        ph.export_viterbi(ph.HMM(Gaussian(3, 2, missing="marginalize")))


def test_viterbi_decoder_rejects_time_varying_transitions():
    trans = torch.zeros(2, 4, 3, 3).log_softmax(-1)  # (B, T-1, K, K)
    with pytest.raises(HMMValueError, match=r"transitions must be static and shared by the batch .* got shape \(2, 4, 3, 3\)"):
        kernel.ViterbiDecoder(ph.Dense(trans), torch.zeros(3))
