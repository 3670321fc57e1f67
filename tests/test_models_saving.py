"""Whole-model files: model.save(path) / pytorch_hmm.load(path) rebuild every model and component
from the file alone, readable by torch.load(weights_only=True)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import pytorch_hmm as ph
from pytorch_hmm import durations
from pytorch_hmm.emissions import Categorical, Gaussian, Neural
from pytorch_hmm.errors import HMMTypeError, HMMValueError
from pytorch_hmm.transitions import Banded, Sparse
from pytorch_hmm.transitions.components import SparseTransitions


def _data(dim: int = 3, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 25, dim, generator=g, dtype=dtype)


def _fitted(model, x, **kwargs):
    model.fit(x, max_iter=3, verbose=False, generator=torch.Generator().manual_seed(1), **kwargs)
    return model


def _sparse_hmm() -> ph.HMM:
    pred = torch.tensor([[0, -1], [0, 1], [1, 2]])
    probs = torch.tensor([[0.6, 0.0], [0.4, 0.7], [0.3, 1.0]])
    return ph.HMM(Gaussian(3, 3), SparseTransitions.from_probs(pred, probs), final="last")


MODELS = {
    "hmm diag ergodic": lambda: _fitted(ph.HMM(Gaussian(3, 3)), _data()),
    "hmm full banded, final last": lambda: _fitted(ph.HMM(Gaussian(4, 3, "full"), "left_to_right", final="last"), _data()),
    "hmm spherical float64": lambda: _fitted(ph.HMM(Gaussian(2, 3, "spherical", dtype=torch.float64)),
                                             _data(dtype=torch.float64)),
    "hmm tied, sparse graph": lambda: _fitted(_sparse_hmm(), _data()),
    "hmm fixed time-varying": lambda: ph.HMM(Gaussian(3, 3, means=torch.randn(3, 3)),
                                             Banded(torch.log_softmax(torch.randn(4, 24, 3, 2), -1))),
    "gmm-hmm after splits": lambda: _fitted(ph.MixtureGaussianHMM(3, 1, 3), _data(), splits=2),
    "categorical hmm": lambda: _fitted(ph.HMM(Categorical(3, 5)), torch.randint(0, 5, (4, 25), generator=torch.Generator().manual_seed(2))),
}

HSMMS = {
    family: (lambda family=family: _fitted(ph.HSMM(Gaussian(3, 3), family, max_duration=8), _data()))
    for family in ("poisson", "gaussian", "gamma", "categorical")
}
HSMMS["categorical durations with pseudo-count, left-to-right"] = lambda: _fitted(
    ph.HSMM(Gaussian(3, 3), durations.Categorical(3, 10, min_duration=2, pseudo_count=0.5), "left_to_right"), _data())


def _assert_same(a, b, x) -> None:
    assert type(a) is type(b)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key
    assert repr(a) == repr(b)
    with torch.no_grad():
        out = a(x)
        assert torch.isfinite(out).all() and torch.equal(out, b(x))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_hmm_comes_back_as_it_was_saved(name: str, tmp_path: Path) -> None:
    model = MODELS[name]()
    x = torch.randint(0, 5, (2, 25)) if "categorical" in name else _data(seed=9, dtype=model._dtype)[:, :25]
    path = model.save(tmp_path / "sub" / "model.pt")
    loaded = ph.load(path)
    _assert_same(model, loaded, x)
    assert not getattr(loaded.emission, "needs_init", False)  # fit keeps the loaded parameters
    if name == "gmm-hmm after splits":
        assert loaded.num_mixtures == 4


@pytest.mark.parametrize("name", sorted(HSMMS))
def test_every_hsmm_duration_family_comes_back(name: str, tmp_path: Path) -> None:
    model = HSMMS[name]()
    loaded = ph.load(model.save(tmp_path / "hsmm.pt"))
    _assert_same(model, loaded, _data(seed=5))
    assert type(loaded.durations) is type(model.durations)
    assert (loaded.durations.min_duration, loaded.max_duration) == (model.durations.min_duration, model.max_duration)
    assert torch.equal(loaded.transmat, model.transmat)


def test_neural_durations_and_their_network_come_back(tmp_path: Path) -> None:
    model = ph.HSMM(Gaussian(3, 2, means=torch.randn(3, 2)), durations.Neural(4, 6, hidden=7))
    context = torch.randn(3, 4)
    loaded = ph.load(model.save(tmp_path / "neural.pt"))
    assert loaded.durations.net[0].out_features == 7
    x = _data(dim=2)
    assert torch.equal(model(x, duration_context=context), loaded(x, duration_context=context))


@pytest.mark.parametrize("transitions", ["ergodic", "left_to_right", "sparse"])
@pytest.mark.parametrize("mode", ["posteriors", "viterbi"])
def test_hmm_layer_comes_back(transitions: str, mode: str, tmp_path: Path) -> None:
    spec = Sparse.from_probs(torch.tensor([[0, 2], [0, 1], [1, 2]]), torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])) \
        if transitions == "sparse" else transitions
    layer = ph.HMMLayer(3, spec, mode=mode, dtype=torch.float64)
    with torch.no_grad():
        layer.transition.logits.add_(torch.randn_like(layer.transition.logits) * layer.transition.exists)
    loaded = ph.load(layer.save(tmp_path / "layer.pt"))
    scores = torch.randn(2, 10, 3, dtype=torch.float64)
    _assert_same(layer, loaded, scores)


def test_the_file_is_plain_data_for_weights_only_loading(tmp_path: Path) -> None:
    model = MODELS["gmm-hmm after splits"]()
    saved = torch.load(model.save(tmp_path / "m.pt"), weights_only=True)
    assert saved["format"] == "pytorch_hmm.model" and saved["format_version"] == 1
    assert saved["spec"]["class"] == "MixtureGaussianHMM"
    assert saved["spec"]["config"]["emission"] == {
        "class": "GaussianMixture",
        "config": {"num_states": 3, "num_mixtures": 4, "dim": 3, "covariance_type": "diag",
                   "min_covar": model.emission.min_covar, "var_floor": model.emission.var_floor, "dtype": "float32"},
    }
    assert all(t.device.type == "cpu" for t in saved["state_dict"].values())


def test_loading_leaves_the_global_random_state_alone(tmp_path: Path) -> None:
    path = MODELS["categorical hmm"]().save(tmp_path / "c.pt")
    before = torch.random.get_rng_state()
    ph.load(path)
    assert torch.equal(before, torch.random.get_rng_state())


def test_a_loaded_model_trains_on_from_where_it_stopped(tmp_path: Path) -> None:
    x = _data()
    model = _fitted(ph.HMM(Gaussian(3, 3)), x)
    loaded = ph.load(model.save(tmp_path / "m.pt"))
    more = dict(max_iter=2, verbose=False, tol=0.0)
    assert loaded.fit(x, **more) == pytest.approx(model.fit(x, **more), rel=1e-6)  # no re-initialisation


def test_map_location_moves_the_model(tmp_path: Path) -> None:
    loaded = ph.load(MODELS["hmm diag ergodic"]().save(tmp_path / "m.pt"), map_location="cpu")
    assert all(p.device.type == "cpu" for p in loaded.parameters())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_map_location_cuda(tmp_path: Path) -> None:
    model = MODELS["hmm full banded, final last"]()
    loaded = ph.load(model.save(tmp_path / "m.pt"), map_location="cuda")
    x = _data(seed=3)
    assert torch.allclose(loaded(x.cuda()).cpu(), model(x), rtol=1e-5)


def test_models_the_file_cannot_describe_are_refused(tmp_path: Path) -> None:
    net = torch.nn.Linear(3, 2)
    with pytest.raises(HMMTypeError, match=r"save stores the library's own models.*got pytorch_hmm\.emissions\.neural\.Neural"):
        ph.HMM(Neural(net, 2)).save(tmp_path / "n.pt")

    class MyHMM(ph.HMM):
        pass

    with pytest.raises(HMMTypeError, match=r"got .*MyHMM: save its state_dict and rebuild it yourself"):
        MyHMM(Gaussian(2, 3)).save(tmp_path / "mine.pt")
    assert not (tmp_path / "n.pt").exists() and not (tmp_path / "mine.pt").exists()


def test_bad_files_say_what_they_are(tmp_path: Path) -> None:
    with pytest.raises(HMMValueError, match="path must be a model file written by model.save; .* does not exist"):
        ph.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(HMMValueError, match="is not a readable pytorch_hmm model file"):
        ph.load(tmp_path / "junk.pt")
    model = ph.HMM(Gaussian(2, 3))
    torch.save(model.state_dict(), tmp_path / "state.pt")
    with pytest.raises(HMMValueError, match=r"is not a pytorch_hmm model file .*model\.load_state_dict"):
        ph.load(tmp_path / "state.pt")
    saved = torch.load(model.save(tmp_path / "m.pt"), weights_only=True)
    torch.save({**saved, "format_version": 2}, tmp_path / "future.pt")
    with pytest.raises(HMMValueError, match="has format version 2; this pytorch_hmm reads versions up to 1: upgrade"):
        ph.load(tmp_path / "future.pt")
    torch.save({**saved, "spec": {"class": "os.system", "config": {}}}, tmp_path / "odd.pt")
    with pytest.raises(HMMValueError, match="describes an unknown component 'os.system'"):
        ph.load(tmp_path / "odd.pt")
