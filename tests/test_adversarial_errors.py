"""Hostile inputs from the adversarial pass (issue "Reliability"): one test per message.

Each case used to leak a third-party error, fail with a misleading message or return a wrong
result silently; each must now raise a ``pytorch_hmm.errors`` type that names the argument, or
return the right result.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pytorch_hmm import HMM, kernel
from pytorch_hmm.alignment import soft_dtw
from pytorch_hmm.durations import Poisson
from pytorch_hmm.emissions import Gaussian
from pytorch_hmm.errors import HMMDimensionError, HMMDtypeError, HMMTypeError, HMMValueError, InfeasibleAlignmentError
from pytorch_hmm.transitions import Dense, ergodic, left_to_right


def _problem():
    g = torch.Generator().manual_seed(0)
    e = torch.randn(2, 5, 3, dtype=torch.float64, generator=g)
    trans = Dense(torch.log_softmax(torch.randn(3, 3, dtype=torch.float64, generator=g), -1))
    return e, trans, torch.zeros(3, dtype=torch.float64)


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_double_backward_through_log_partition_says_which_path_has_it(backend):
    e, trans, init = _problem()
    x = e.clone().requires_grad_(True)
    log_z = kernel.log_partition(x, trans, init, backend=backend).sum()
    with pytest.raises(HMMValueError, match=r"log_partition has first derivatives only.*posteriors\(\.\.\., differentiable=True\)"):
        torch.autograd.grad(log_z, x, create_graph=True)  # (used to fail later, with "does not require grad")
    (g,) = torch.autograd.grad(kernel.log_partition(x, trans, init, backend=backend).sum(), x)  # first order still works
    torch.testing.assert_close(g, kernel.posteriors(e, trans, init, backend=backend))


def test_the_second_order_path_named_by_that_message_works():
    """posteriors(differentiable=True) is differentiable: its gradient is d^2 log Z / de^2 . v."""
    e, trans, init = _problem()
    x = e.clone().requires_grad_(True)
    post = kernel.posteriors(x, trans, init, differentiable=True)
    v = torch.randn_like(post)
    (hvp,) = torch.autograd.grad((post * v).sum(), x)
    # finite differences of the posteriors along v (the Hessian of log Z is symmetric)
    eps = 1e-6
    fd = ((kernel.posteriors(e + eps * v, trans, init) - kernel.posteriors(e - eps * v, trans, init)) / (2 * eps))
    torch.testing.assert_close(hvp, fd, rtol=1e-5, atol=1e-7)


def test_double_backward_through_soft_dtw_is_a_clear_error():
    x = torch.randn(1, 5, 2, dtype=torch.float64, requires_grad=True)
    with pytest.raises(HMMValueError, match="soft-DTW has first derivatives only"):
        torch.autograd.grad(soft_dtw(x, x.detach().flip(1), 1.0).sum(), x, create_graph=True)


@pytest.mark.parametrize("builder", [ergodic, left_to_right])
def test_integer_dtype_for_transition_builders_is_rejected(builder):
    # ergodic(3, dtype=torch.int64) used to return all -inf silently
    with pytest.raises(HMMDtypeError, match=r"dtype must be torch.float32 or torch.float64; got torch.int64"):
        builder(3, dtype=torch.int64)


def test_numpy_integers_are_positive_ints():
    assert HMM(Gaussian(np.int64(2), 1)).emission.num_states == 2
    assert ergodic(np.int32(3)).log_probs.shape == (3, 3)
    assert left_to_right(3, skip=np.int64(1)).log_probs.shape == (3, 3)
    assert Poisson(np.int64(2), np.int64(4)).max_duration == 4
    with pytest.raises(HMMValueError, match="num_states must be a positive int; got True"):
        ergodic(True)
    with pytest.raises(HMMValueError, match="skip must be an int >= 0; got -1"):
        left_to_right(3, skip=-1)


@pytest.mark.parametrize("data", [[], ()])
def test_fit_on_no_sequences_names_the_argument(data):
    # used to leak torch.cat(): expected a non-empty list of Tensors
    with pytest.raises(HMMValueError, match="data must hold at least one sequence"):
        HMM(Gaussian(2, 1)).fit(data, verbose=False)


@pytest.mark.parametrize(
    "log_init,trans,message",
    [
        (torch.tensor([0.0, float("nan")]), torch.zeros(2, 2), r"log_init \(sequence 0\) has NaN or \+inf"),
        (torch.full((2,), float("-inf")), torch.zeros(2, 2), r"log_init \(sequence 0\) has no finite log-probability"),
        # state 1 is reached at step 1 and has no way out: a dead end
        (torch.tensor([0.0, float("-inf")]), torch.tensor([[float("-inf"), 0.0], [float("-inf"), float("-inf")]]),
         r"the moves out of state 1 \(sequence 0, step 1 -> 2\) has no finite log-probability"),
    ],
    ids=["nan-init", "empty-init", "dead-end"],
)
def test_sampling_bad_rows_names_them(log_init, trans, message):
    # used to leak torch.multinomial's "probability tensor contains either inf, nan or element < 0"
    with pytest.raises(HMMValueError, match=message):
        kernel.sample_paths(Dense(trans), log_init, 2, 4)


def test_sampling_never_visits_an_unreachable_dead_end():
    trans = torch.tensor([[0.0, float("-inf")], [float("-inf"), float("-inf")]])  # state 1: dead end, never entered
    paths = kernel.sample_paths(Dense(trans), torch.tensor([0.0, float("-inf")]), 3, 5)
    assert (paths == 0).all()


@pytest.mark.parametrize(
    "x_shape,lengths,message",
    [
        ((2, 10, 1), torch.tensor([3]), r"lengths must be \(B,\) with B == 2; got shape \(1,\)"),
        ((2, 10, 1), [3, 4, 5], r"lengths must be \(B,\) with B == 2; got shape \(3,\)"),
        ((2, 10, 1), [3, 11], r"lengths must be in \[1, T\] = \[1, 10\]"),
        ((0, 10, 1), None, r"data must be a padded \(B, T, \.\.\.\) tensor with B >= 1 .*got shape \(0, 10, 1\)"),
        ((2, 0, 1), None, r"data must be a padded \(B, T, \.\.\.\) tensor with B >= 1 .*got shape \(2, 0, 1\)"),
    ],
    ids=["lengths-short", "lengths-long", "lengths-past-T", "B=0", "T=0"],
)
def test_fit_checks_the_batch_before_using_it(x_shape, lengths, message):
    # used to leak IndexError ("The shape of the mask ...") or amax()'s RuntimeError
    with pytest.raises(HMMValueError, match=message):
        HMM(Gaussian(2, 1)).fit(torch.randn(x_shape), lengths=lengths, verbose=False, max_iter=2)


def test_numeric_knobs_reject_nan_by_name():
    from pytorch_hmm.metrics import mel_cepstrum
    from pytorch_hmm.speech import cmvn, speaker_cmvn

    # each used to return NaN features or cepstra silently
    with pytest.raises(HMMValueError, match="eps must be a positive finite number; got nan"):
        cmvn(torch.randn(1, 50, 13), eps=float("nan"))
    with pytest.raises(HMMValueError, match="eps must be a positive finite number; got nan"):
        speaker_cmvn([torch.randn(50, 13)], ["a"], eps=float("nan"))
    with pytest.raises(HMMValueError, match="floor_db must be a finite number of dB below 0; got nan"):
        mel_cepstrum(torch.randn(16000), 16000, floor_db=float("nan"))


def test_a_sample_rate_in_khz_is_caught():
    from pytorch_hmm.metrics import mel_cepstrum

    # used to leak "negative shift count" from 1 << ceil(log2(0.025 * 16))
    with pytest.raises(HMMValueError, match=r"sample_rate must be in Hz.*16 kHz is sample_rate=16000"):
        mel_cepstrum(torch.randn(16000), 16)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_gaussian_duration_too_narrow_for_its_dtype_is_rejected(dtype):
    from pytorch_hmm.durations import Gaussian as GaussianDuration

    # std = 1e-20 used to give all-NaN duration log-probabilities
    with pytest.raises(HMMValueError, match=r"std must be at least .* frames in torch.float"):
        GaussianDuration(2, 10, mean=torch.tensor([3.0, 5.0]), std=torch.tensor([1e-20, 1.0]), dtype=dtype)
    # a narrow but representable one is a point mass at the mean
    d = GaussianDuration(1, 10, mean=3.0, std=0.05, dtype=dtype)
    probs = d.log_probs().detach().exp()
    assert float(probs[0, 2]) == pytest.approx(1.0, abs=1e-6)


def test_frame_accuracy_with_times_in_samples_is_caught_before_allocating():
    from pytorch_hmm.alignment import Segment
    from pytorch_hmm.metrics import frame_accuracy

    # times in samples at 16 kHz: used to request ~119 GiB of frame ids
    ref = [Segment("a", 0.0, 16000.0 * 3600), Segment("b", 16000.0 * 3600, 16000.0 * 7200)]
    with pytest.raises(HMMValueError, match=r"segment times must be in seconds \(are they samples or milliseconds\?\)"):
        frame_accuracy(ref, ref)
    assert frame_accuracy([Segment("a", 0.0, 1.0)], [Segment("a", 0.0, 1.0)]) == 1.0


@pytest.mark.parametrize("scale", [1e-20, 1e20])
def test_kmeans_is_scale_invariant_at_extreme_magnitudes(scale):
    from pytorch_hmm.emissions import kmeans

    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(100, 2, generator=g) - 5, torch.randn(100, 2, generator=g) + 5])
    c1, l1 = kmeans(x, 2, generator=torch.Generator().manual_seed(1))
    # |x| ~ 1e20 used to leak torch.multinomial's error (squared distances overflowed float32)
    c2, l2 = kmeans(x * scale, 2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(l1, l2)
    torch.testing.assert_close(c2 / scale, c1, rtol=1e-5, atol=1e-5)


def test_double_backward_through_the_semi_markov_kernel_is_a_clear_error():
    g = torch.Generator().manual_seed(0)
    e = torch.randn(1, 6, 2, dtype=torch.float64, generator=g, requires_grad=True)
    trans = torch.tensor([[float("-inf"), 0.0], [0.0, float("-inf")]], dtype=torch.float64)
    dur = torch.log_softmax(torch.randn(2, 3, dtype=torch.float64, generator=g), -1)
    log_z = kernel.semi_markov_log_partition(e, trans, dur, torch.zeros(2, dtype=torch.float64)).sum()
    with pytest.raises(HMMValueError, match="semi_markov_log_partition has first derivatives only"):
        torch.autograd.grad(log_z, e, create_graph=True)
    (grad,) = torch.autograd.grad(kernel.semi_markov_log_partition(e, trans, dur, torch.zeros(2, dtype=torch.float64)).sum(), e)
    assert torch.isfinite(grad).all()


def _models():
    from pytorch_hmm import HSMM, MixtureGaussianHMM

    return {
        "HMM": HMM(Gaussian(3, 2)),
        "HSMM": HSMM(Gaussian(3, 2), "poisson", max_duration=4),
        "MixtureGaussianHMM": MixtureGaussianHMM(3, 2, 2),
    }


@pytest.mark.parametrize("model", ["HMM", "HSMM", "MixtureGaussianHMM"])
@pytest.mark.parametrize("method", ["forward", "posteriors", "viterbi", "log_emissions"])
@pytest.mark.parametrize("shape", [(0, 5, 2), (2, 0, 2), (0, 0, 2)], ids=["B0", "T0", "B0T0"])
def test_models_on_an_empty_batch_say_so(model, method, shape):
    """Used to leak ``amax()``'s "Expected reduction dim to be specified" from the emission."""
    with pytest.raises(HMMDimensionError, match=r"x must have at least one sequence and one frame; got shape"):
        getattr(_models()[model], method)(torch.zeros(shape))


@pytest.mark.parametrize("model", ["HMM", "HSMM", "MixtureGaussianHMM"])
def test_integer_observations_are_not_told_to_convert_the_emission(model):
    with pytest.raises(HMMDtypeError, match=r"Convert x with x.to\(torch.float32\)$"):
        _models()[model](torch.zeros(1, 5, 2, dtype=torch.int64))
    # a float dtype mismatch may go either way
    with pytest.raises(HMMDtypeError, match=r"x.to\(torch.float32\) or the emission with .to\(torch.float64\)"):
        _models()[model](torch.zeros(1, 5, 2, dtype=torch.float64))


def test_hmm_layer_names_its_argument():
    from pytorch_hmm import HMMLayer

    layer = HMMLayer(3)
    with pytest.raises(HMMTypeError, match=r"scores must be a torch.Tensor of shape \(B, T, K\); got ndarray"):
        layer(np.zeros((1, 5, 3), dtype=np.float32))
    with pytest.raises(HMMDimensionError, match=r"scores must have at least one sequence, frame and state"):
        layer(torch.zeros(0, 5, 3))


def _wrong_types():
    from pytorch_hmm.emissions import Categorical, Neural
    from pytorch_hmm.speech.korean import pronounce
    from pytorch_hmm.speech.lexicon import Lexicon

    neural = Neural(torch.nn.Linear(2, 3), num_states=3)
    return [
        ("x of Categorical", lambda: Categorical(2, 3).log_prob([[0, 1]])),
        ("probs of Categorical", lambda: Categorical(2, 3, probs=[[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]])),
        ("x of Neural", lambda: neural.log_prob(np.zeros((1, 4, 2), dtype=np.float32))),
        ("module of Neural", lambda: Neural("linear", num_states=3)),
        ("data of fit", lambda: HMM(Gaussian(3, 2)).fit("frames")),
        ("word of pronounce", lambda: pronounce(["한"])),
        ("entries of Lexicon", lambda: Lexicon([("a", "AH")])),
    ]


@pytest.mark.parametrize("case", range(7))
def test_wrong_python_types_raise_the_library_type_error(case):
    """``TypeError`` for the caller, ``HMMValueError`` for ``except pytorch_hmm.errors...``."""
    what, call = _wrong_types()[case]
    with pytest.raises(HMMTypeError, match=r"got (list|ndarray|str|tuple)") as err:
        call()
    assert isinstance(err.value, TypeError) and isinstance(err.value, HMMValueError), what


# ---------------------------------------------------------------------------------------
# the model's own parameters: NaN reported where it is given, -inf rows kept, meta tensors
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build,message",
    [
        (lambda: _initial(torch.tensor([float("nan"), 0.0, 0.0])), r"Initial log_probs must not contain NaN or \+inf; found NaN"),
        (lambda: _initial(torch.full((3,), float("-inf"))), r"Initial log_probs must let some state start .*got all -inf"),
        (lambda: _final(torch.tensor([float("inf"), 0.0, 0.0])), r"log_final must not contain NaN or \+inf; found \+inf"),
        (lambda: _final(torch.full((3,), float("-inf"))), r"log_final must let some state end .*got all -inf"),
        (lambda: _dense_component(torch.tensor([[float("nan"), 0.0], [0.0, 0.0]])),
         r"DenseTransitions log-probabilities must not contain NaN or \+inf; found NaN"),
    ],
    ids=["initial-nan", "initial-none", "final-inf", "final-none", "dense-nan"],
)
def test_component_parameters_are_checked_where_they_are_given(build, message):
    """These used to construct fine and fail at decode time as "log_init ... found NaN"."""
    with pytest.raises(HMMValueError, match=message):
        build()


def _initial(v):
    from pytorch_hmm.transitions import Initial

    return HMM(Gaussian(3, 2), initial=Initial(v))


def _final(v):
    return HMM(Gaussian(3, 2), final=v)


def _dense_component(v):
    from pytorch_hmm.transitions import DenseTransitions

    return DenseTransitions(v)


def test_a_categorical_state_that_emits_nothing_is_impossible_not_nan():
    """A row of -inf logits used to normalise to NaN, reported as "log_emissions ... found NaN"."""
    from pytorch_hmm.emissions import Categorical

    emission = Categorical(3, 4, probs=torch.tensor([[0.25] * 4, [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]]))
    with torch.no_grad():
        emission.logits[1] = float("-inf")
    x = torch.tensor([[0, 1, 2, 3]])
    scores = emission.log_prob(x)
    assert torch.isneginf(scores[..., 1]).all() and torch.isfinite(scores[..., [0, 2]]).all()
    model = HMM(emission)
    log_z = model(x)
    assert torch.isfinite(log_z).all()
    post = model.posteriors(x)
    assert (post[..., 1] == 0).all()  # the state that emits nothing is never visited
    torch.testing.assert_close(post.sum(-1), torch.ones(1, 4))
    (g,) = torch.autograd.grad(log_z.sum(), emission.logits)
    assert not torch.isnan(g).any()


@pytest.mark.parametrize("build", ["mixture", "durations"])
def test_all_minus_inf_rows_of_other_tables_stay_minus_inf(build):
    from pytorch_hmm import durations
    from pytorch_hmm.emissions import GaussianMixture

    if build == "mixture":
        em = GaussianMixture(2, 2, 1)
        with torch.no_grad():
            em.logits[0] = float("-inf")
        out = em.log_prob(torch.zeros(1, 3, 1))
        assert torch.isneginf(out[..., 0]).all() and torch.isfinite(out[..., 1]).all()
    else:
        d = durations.Categorical(2, 3)
        with torch.no_grad():
            d.logits[1] = float("-inf")
        lp = d.log_probs()
        assert torch.isneginf(lp[1]).all() and torch.isfinite(lp[0]).all()


def test_duration_probs_without_mass_on_the_support_are_rejected():
    from pytorch_hmm import durations

    with pytest.raises(HMMValueError, match=r"probs must put mass on durations 2\.\.3 .* row 0 has none"):
        durations.Categorical(2, 3, probs=torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]]), min_duration=2)


def test_models_build_on_the_meta_device_and_load_real_weights():
    """Deferred initialisation used to fail with "Tensor.item() cannot be called on meta tensors"."""
    from pytorch_hmm import HSMM, HMMLayer, MixtureGaussianHMM
    from pytorch_hmm.emissions import Categorical

    builders = [lambda: HMM(Gaussian(3, 2)), lambda: HSMM(Gaussian(3, 2), "gamma", max_duration=4),
                lambda: MixtureGaussianHMM(3, 2, 2), lambda: HMMLayer(3), lambda: HMM(Categorical(3, 4))]
    for build in builders:
        torch.manual_seed(0)
        reference = build()
        with torch.device("meta"):
            model = build()
        assert all(p.is_meta for p in model.parameters())
        model.to_empty(device="cpu")
        model.load_state_dict(reference.state_dict())
        x = torch.randn(1, 5, 3) if isinstance(model, HMMLayer) else (
            torch.randint(0, 4, (1, 5)) if isinstance(model.emission, Categorical) else torch.randn(1, 5, 2))
        with torch.no_grad():  # scoring: a fresh model in training mode would initialise from x
            torch.testing.assert_close(model(x), reference(x))


def test_computing_on_meta_tensors_is_a_device_error():
    from pytorch_hmm.errors import HMMDeviceError

    model = HMM(Gaussian(3, 2)).to("meta")
    with pytest.raises(HMMDeviceError, match=r"x is on the meta device \(no data\).*to_empty"):
        model(torch.zeros(1, 5, 2, device="meta"))
    with pytest.raises(HMMDeviceError, match=r"log_emissions is on the meta device"):
        kernel.log_partition(torch.zeros(1, 5, 3, device="meta"), Dense(torch.zeros(3, 3, device="meta")),
                             torch.zeros(3, device="meta"))


# ---------------------------------------------------------------------------------------
# numeric knobs: checked by name before they reach numpy, scipy, librosa or a NaN
# ---------------------------------------------------------------------------------------


def _knob_calls():
    from pytorch_hmm import MixtureGaussianHMM, durations
    from pytorch_hmm.emissions import Categorical, GaussianMixture
    from pytorch_hmm.speech import FeatureExtractor, pad_batch
    from pytorch_hmm.speech.lexicon import Pronunciation
    from pytorch_hmm.speech.synthetic import synthesize_phones

    x = torch.randn(2, 20, 2, generator=torch.Generator().manual_seed(0))
    return {
        "tol": (lambda v: HMM(Gaussian(3, 2)).fit(x, tol=math.nan, max_iter=2, verbose=False), r"tol must be a number of nats"),
        "min_covar": (lambda v: Gaussian(3, 2, min_covar=v), r"min_covar must be a finite number >= 0"),
        "mixture min_covar": (lambda v: GaussianMixture(3, 2, 2, min_covar=v), r"min_covar must be a finite number >= 0"),
        "covars_prior": (lambda v: Gaussian(3, 2, covars_prior=v), r"covars_prior must be finite and >= 0"),
        "means_weight": (lambda v: Gaussian(3, 2, means_weight=v), r"means_weight must be finite and >= 0"),
        "covars_weight": (lambda v: Gaussian(3, 2, covars_weight=v * math.inf), r"covars_weight must be finite"),
        "weights_prior": (lambda v: GaussianMixture(3, 2, 2, weights_prior=v), r"weights_prior must be finite and >= 0"),
        "mixture means_weight": (lambda v: GaussianMixture(3, 2, 2, means_weight=v), r"means_weight must be finite and >= 0"),
        "pseudocount": (lambda v: Categorical(3, 4, pseudocount=v * 2), r"pseudocount must be finite and >= -1"),
        "pseudo_count": (lambda v: durations.Categorical(3, 4, pseudo_count=v), r"pseudo_count must be a finite number >= 0"),
        "hidden": (lambda v: durations.Neural(2, 4, hidden=v), r"hidden must be a positive int"),
        "ramp": (lambda v: synthesize_phones(["AA", "B"], [0.1, 0.1], ramp=v), r"ramp must be a finite number of seconds >= 0"),
        "window_ms": (lambda v: FeatureExtractor(window_ms=1e300 if v < 0 else v), r"window_ms must be a positive finite number of milliseconds below 10000"),
        "padding_value": (lambda v: pad_batch([torch.zeros(2, 1), torch.zeros(3, 1)], padding_value=1e300), r"padding_value must fit in the features' dtype"),
        "splits": (lambda v: MixtureGaussianHMM(3, 2, 2).fit(x, splits=True, verbose=False), r"splits must be a non-negative int; got True"),
        "probability": (lambda v: Pronunciation(("AH",), probability=True), r"probability must be in \(0, 1\]; got True"),
    }


@pytest.mark.parametrize("knob", sorted(_knob_calls()))
@pytest.mark.parametrize("value", [float("nan"), -1.0], ids=["nan", "negative"])
def test_numeric_knobs_are_checked_by_name(knob, value):
    call, message = _knob_calls()[knob]
    with pytest.raises(HMMValueError, match=message):
        call(value)


@pytest.mark.parametrize("backend", ["torch", "numba"])
@pytest.mark.parametrize("routine", ["dtw", "soft_dtw", "soft_dtw_alignment"])
def test_float32_distance_overflow_is_not_blamed_on_the_band(routine, backend):
    """Used to say "widen the band (any radius >= 1 admits a path)" with no band at all."""
    from pytorch_hmm import alignment

    x, y = torch.full((1, 4, 2), 1e20), torch.full((1, 5, 2), -1e20)
    with pytest.raises(InfeasibleAlignmentError, match=r"squared differences between x and y overflow torch.float32"):
        getattr(alignment, routine)(x, y, backend=backend)
    # float64 holds them, and a band of radius 0 is still the band's fault
    assert torch.isfinite(alignment.dtw(x.double(), y.double(), backend=backend).cost).all()
    with pytest.raises(InfeasibleAlignmentError, match=r"with band=0: widen the band"):
        alignment.dtw(torch.zeros(1, 2, 1), torch.zeros(1, 5, 1), band=0, backend=backend)


@pytest.mark.parametrize(
    "hyp,message",
    [
        ([["a", 0.0], ("b", 0.5, 1.0)], r"hyp\[0\] must be a \(label, start_s, end_s\) segment; got \['a', 0.0\]"),
        ([("a", 0.0, 0.5), ["b", 0.5]], r"hyp\[1\] must be a \(label, start_s, end_s\) segment; got \['b', 0.5\]"),
    ],
)
def test_one_malformed_segment_is_reported_as_that_segment(hyp, message):
    """A malformed first segment used to make the segmentation look like a batch of two:
    "ref and hyp must both be single utterances or batches of equal size"."""
    from pytorch_hmm.metrics import boundary_f1

    with pytest.raises(HMMValueError, match=message):
        boundary_f1([("a", 0.0, 0.5), ("b", 0.5, 1.0)], hyp)


def test_a_missing_utterance_in_a_batch_of_segmentations_is_named():
    from pytorch_hmm.metrics import frame_accuracy

    ok = [("a", 0.0, 0.5), ("b", 0.5, 1.0)]
    with pytest.raises(HMMTypeError, match=r"hyp\[1\] must be a list of \(label, start_s, end_s\) segments; got NoneType"):
        frame_accuracy([ok, ok], [ok, None])


@pytest.mark.parametrize("backend", ["torch", "numba"])
@pytest.mark.parametrize("squared", [True, False], ids=["sqeuclidean", "euclidean"])
def test_pairwise_distances_have_second_derivatives(backend, squared):
    """The distance backward was once_differentiable (a raw RuntimeError under create_graph);
    its gradient past the lengths was the caller's incoming gradient instead of 0."""
    from pytorch_hmm.alignment.distances import pairwise_euclidean

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 3, dtype=torch.float64, generator=g, requires_grad=True)
    y = torch.randn(2, 5, 3, dtype=torch.float64, generator=g, requires_grad=True)
    xl, yl = torch.tensor([4, 3]), torch.tensor([5, 2])

    def distances(a, b):
        return pairwise_euclidean(a, b, xl, yl, squared, backend=backend)

    assert torch.autograd.gradcheck(distances, (x, y))
    assert torch.autograd.gradgradcheck(distances, (x, y))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_span_scores_must_be_log_probabilities(bad):
    """A NaN score used to give a span of score NaN, silently."""
    from pytorch_hmm.alignment import merge_tokens, path_segments

    with pytest.raises(HMMValueError, match=r"scores must not contain NaN or \+inf \(at frames that are not padding\)"):
        merge_tokens(torch.tensor([0, 1, 1]), torch.tensor([0.0, bad, -1.0]))
    with pytest.raises(HMMValueError, match=r"scores must not contain NaN or \+inf"):
        path_segments(torch.tensor([[0, 0, 1]]), torch.tensor([[0, 1]]), torch.tensor([[5, 6]]), torch.tensor([[0.0, bad, 0.0]]))
    # padding frames may hold anything, and -inf (probability 0) is a score
    spans = merge_tokens(torch.tensor([0, 1, 1, -1]), torch.tensor([0.0, -1.0, float("-inf"), bad]))
    assert [(s.token, s.start, s.end) for s in spans] == [(1, 1, 3)]
    assert spans[0].score == pytest.approx(math.exp(-1.0) / 2)
