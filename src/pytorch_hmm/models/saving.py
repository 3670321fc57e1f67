"""Whole-model files: ``model.save(path)`` and :func:`load`, without pickled classes.

A file holds a plain dictionary that ``torch.load(path, weights_only=True)`` reads: the format
name and version, a *spec* (the model's class and the few settings its constructor needs,
nested for its components: emission, transitions, initial, final, durations) and the
``state_dict``. :func:`load` rebuilds the model from the spec with its own constructors, then
loads the state, so a ``MixtureGaussianHMM`` grown by ``fit(splits=2)``, an HSMM with its
duration family or an HMM over a sparse graph comes back as it was saved::

    model.save("model.pt")
    same = pytorch_hmm.load("model.pt")        # or load(..., map_location="cuda")

Only the library's own classes are rebuilt (a fixed table, no imports by name): models
(``HMM``, ``MixtureGaussianHMM``, ``HSMM``, ``HMMLayer``), emissions (``Gaussian``,
``GaussianMixture``, ``Categorical``), transition components, ``Initial``, ``Final`` and the
duration families. A ``Neural`` emission or a model subclass of your own holds code the file
cannot describe: save its ``state_dict`` and rebuild it yourself.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple, Union

import torch
from torch import nn

from .. import durations
from ..emissions import Categorical, Gaussian, GaussianMixture
from ..errors import HMMTypeError, HMMValueError
from ..transitions import Banded, Dense, Sparse
from ..transitions.components import (BandedTransitions, DenseTransitions, Final, FixedTransitions, Initial,
                                      LearnedFinal, SparseTransitions)
from .hmm import HMM
from .hsmm import HSMM
from .layer import HMMLayer
from .mixture_hmm import MixtureGaussianHMM

FORMAT = "pytorch_hmm.model"
FORMAT_VERSION = 1
PathLike = Union[str, os.PathLike]
State = Dict[str, torch.Tensor]

__all__ = ["save", "load", "FORMAT", "FORMAT_VERSION"]


def save(module: nn.Module, path: PathLike) -> Path:
    """Write ``module`` (a model or :class:`~pytorch_hmm.HMMLayer`) to ``path``; returns the path.

    Parent folders are created; tensors are stored on the CPU.
    """
    spec = _spec(module)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {name: t.detach().cpu() for name, t in module.state_dict().items()}
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "spec": spec, "state_dict": state}, path)
    return path


def load(path: PathLike, map_location: Union[str, torch.device, None] = None) -> nn.Module:
    """The model saved at ``path`` by ``save``, on ``map_location`` (default: the CPU).

    Raises:
        HMMValueError: the file is missing, unreadable, not a pytorch_hmm model file, or from a
            newer format version.
    """
    path = Path(path)
    if not path.is_file():
        raise HMMValueError(f"path must be a model file written by model.save; {str(path)!r} does not exist")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which, keep the cause
        raise HMMValueError(f"{str(path)!r} is not a readable pytorch_hmm model file ({type(err).__name__}: {err})") from err
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise HMMValueError(f"{str(path)!r} is not a pytorch_hmm model file (no {FORMAT!r} header); "
                            f"a bare state_dict loads with model.load_state_dict(torch.load(path))")
    version = saved.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise HMMValueError(f"{str(path)!r} has format version {version!r}; this pytorch_hmm reads versions up to "
                            f"{FORMAT_VERSION}: upgrade pytorch_hmm")
    state = saved["state_dict"]
    module = _build(saved["spec"], state, "")
    module.load_state_dict(state)
    return module if map_location is None else module.to(map_location)


# --- specs: the class and constructor settings of every component, nested ---

def _spec(module: nn.Module) -> dict:
    cls = type(module)
    if cls not in _SAVERS:
        known = ", ".join(sorted(c.__name__ for c in _SAVERS))
        raise HMMTypeError(f"save stores the library's own models and components ({known}); got {cls.__module__}."
                           f"{cls.__name__}: save its state_dict and rebuild it yourself")
    return {"class": _NAMES[cls], "config": _SAVERS[cls](module)}


def _build(spec: dict, state: State, prefix: str) -> nn.Module:
    if not isinstance(spec, dict) or spec.get("class") not in _BUILDERS:
        raise HMMValueError(f"the model file describes an unknown component {spec.get('class') if isinstance(spec, dict) else spec!r}")
    return _BUILDERS[spec["class"]](spec["config"], state, prefix)


def _dtype_name(module: nn.Module) -> str:
    t = next((t for t in list(module.parameters()) + list(module.buffers()) if t.is_floating_point()), None)
    return str(t.dtype if t is not None else torch.float32).replace("torch.", "")


def _dtype(config: dict) -> torch.dtype:
    return getattr(torch, config["dtype"])


def _saved_table(state: State, prefix: str) -> torch.Tensor:
    """A component's saved log-probability table (``-inf`` where its entries do not exist)."""
    return state[prefix + "logits"].masked_fill(~state[prefix + "exists"], -math.inf)


def _model_parts(model) -> dict:
    return {"emission": _spec(model.emission), "transition": _spec(model.transition), "initial": _spec(model.initial),
            "final": None if model.final is None else _spec(model.final)}


def _hmm_parts(config: dict, state: State, prefix: str) -> Tuple[nn.Module, nn.Module, Initial, Optional[Final]]:
    final = config["final"]
    return (_build(config["emission"], state, prefix + "emission."), _build(config["transition"], state, prefix + "transition."),
            _build(config["initial"], state, prefix + "initial."),
            None if final is None else _build(final, state, prefix + "final."))


def _build_hmm(config: dict, state: State, prefix: str) -> nn.Module:
    emission, transition, initial, final = _hmm_parts(config, state, prefix)
    return HMM(emission, transition, initial, final)


def _build_mixture_hmm(config: dict, state: State, prefix: str) -> nn.Module:
    emission, transition, initial, final = _hmm_parts(config, state, prefix)
    model = MixtureGaussianHMM(emission.num_states, emission.num_mixtures, emission.dim, emission.covariance_type,
                               transitions=transition, init_probs=initial, final=final, dtype=emission.means.dtype,
                               min_covar=emission.min_covar, var_floor=emission.var_floor)
    model.emission = emission  # the saved emission (same settings, its own priors)
    return model


def _build_hsmm(config: dict, state: State, prefix: str) -> nn.Module:
    # transitions, initial and final are tables whose shapes the emission fixes: the state fills them
    return HSMM(_build(config["emission"], state, prefix + "emission."), _build(config["durations"], state, prefix + "durations."))


def _build_layer(config: dict, state: State, prefix: str) -> nn.Module:
    transition = _build(config["transition"], state, prefix + "transition.")
    return HMMLayer(config["num_states"], transition, config["mode"], dtype=_dtype(config))


def _layer_config(layer) -> dict:
    return {"num_states": layer.num_states, "mode": layer.mode, "transition": _spec(layer.transition),
            "dtype": _dtype_name(layer)}


def _fixed_config(component: FixedTransitions) -> dict:
    return {"storage": component._storage.__name__}


def _build_fixed(config: dict, state: State, prefix: str) -> nn.Module:
    table = state[prefix + "table"]
    storage = {"Dense": Dense, "Banded": Banded}.get(config["storage"])
    structure = Sparse(state[prefix + "predecessors"], table) if config["storage"] == "Sparse" else storage(table)
    return FixedTransitions(structure)


def _gaussian_config(e: Gaussian) -> dict:
    return {"num_states": e.num_states, "dim": e.dim, "covariance_type": e.covariance_type, "min_covar": e.min_covar,
            "var_floor": e.var_floor, "missing": e.missing, "dtype": _dtype_name(e)}


def _mixture_config(e: GaussianMixture) -> dict:
    return {"num_states": e.num_states, "num_mixtures": e.num_mixtures, "dim": e.dim,
            "covariance_type": e.covariance_type, "min_covar": e.min_covar, "var_floor": e.var_floor,
            "dtype": _dtype_name(e)}


def _categorical_config(e: Categorical) -> dict:
    return {"num_states": e.num_states, "num_symbols": e.num_symbols, "dtype": _dtype_name(e)}


def _build_categorical(config: dict, state: State, prefix: str) -> nn.Module:
    k, s = config["num_states"], config["num_symbols"]
    uniform = torch.full((k, s), 1.0 / s, dtype=torch.float64)  # not the random default: the user's RNG is left alone
    return Categorical(k, s, probs=uniform, dtype=_dtype(config))


def _duration_config(d: durations.Duration) -> dict:
    config = {"num_states": d.num_states, "max_duration": d.max_duration, "min_duration": d.min_duration,
              "dtype": _dtype_name(d)}
    if isinstance(d, durations.Categorical):
        config["pseudo_count"] = d.pseudo_count
    return config


def _build_duration(cls) -> Callable[[dict, State, str], nn.Module]:
    def build(config: dict, state: State, prefix: str) -> nn.Module:
        extra = {"pseudo_count": config["pseudo_count"]} if cls is durations.Categorical else {}
        return cls(config["num_states"], config["max_duration"], min_duration=config["min_duration"],
                   dtype=_dtype(config), **extra)
    return build


def _neural_duration_config(d: durations.Neural) -> dict:
    return {"context_dim": d.context_dim, "max_duration": d.max_duration, "min_duration": d.min_duration,
            "hidden": d.net[0].out_features, "dtype": _dtype_name(d)}


def _build_neural_duration(config: dict, state: State, prefix: str) -> nn.Module:
    return durations.Neural(config["context_dim"], config["max_duration"], hidden=config["hidden"],
                            min_duration=config["min_duration"]).to(_dtype(config))


def _registry() -> Tuple[dict, dict, dict]:
    no_settings = lambda _module: {}  # noqa: E731 - rebuilt from their saved tables alone
    table = {
        HMM: ("HMM", _model_parts, _build_hmm),
        MixtureGaussianHMM: ("MixtureGaussianHMM", _model_parts, _build_mixture_hmm),
        HSMM: ("HSMM", lambda m: {"emission": _spec(m.emission), "durations": _spec(m.durations)}, _build_hsmm),
        HMMLayer: ("HMMLayer", _layer_config, _build_layer),
        Gaussian: ("Gaussian", _gaussian_config, lambda c, s, p: Gaussian(**{**c, "dtype": _dtype(c)})),
        GaussianMixture: ("GaussianMixture", _mixture_config, lambda c, s, p: GaussianMixture(**{**c, "dtype": _dtype(c)})),
        Categorical: ("Categorical", _categorical_config, _build_categorical),
        Initial: ("Initial", no_settings, lambda c, s, p: Initial(_saved_table(s, p))),
        Final: ("Final", no_settings, lambda c, s, p: Final(s[p + "log_weights"])),
        LearnedFinal: ("LearnedFinal", no_settings, lambda c, s, p: LearnedFinal(_saved_table(s, p).log_softmax(-1)[:, 1])),
        DenseTransitions: ("DenseTransitions", no_settings, lambda c, s, p: DenseTransitions(_saved_table(s, p), exists=s[p + "exists"])),
        BandedTransitions: ("BandedTransitions", no_settings, lambda c, s, p: BandedTransitions(_saved_table(s, p))),
        SparseTransitions: ("SparseTransitions", no_settings,
                            lambda c, s, p: SparseTransitions(s[p + "predecessors"], _saved_table(s, p))),
        FixedTransitions: ("FixedTransitions", _fixed_config, _build_fixed),
        durations.Neural: ("durations.Neural", _neural_duration_config, _build_neural_duration),
    }
    for cls in (durations.Poisson, durations.Gaussian, durations.Gamma, durations.Categorical):
        table[cls] = (f"durations.{cls.__name__}", _duration_config, _build_duration(cls))
    names = {cls: name for cls, (name, _, _) in table.items()}
    savers = {cls: saver for cls, (_, saver, _) in table.items()}
    builders = {name: builder for name, _, builder in table.values()}
    return names, savers, builders


_NAMES, _SAVERS, _BUILDERS = _registry()
