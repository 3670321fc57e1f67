"""``torch.compile`` (issue 21): compiled models and networks around ``HMMLayer`` give the eager
values and gradients; the kernel's entry points run eagerly inside compiled code (no graph of
their time loop, so no recompilation for a new length). The correctness tests use the
``aot_eager`` backend (no C++ compiler needed); ``benchmarks/bench_compile.py`` times inductor."""

import pytest
import torch
from torch import nn

import pytorch_hmm as ph
from pytorch_hmm import kernel
from pytorch_hmm.emissions import Gaussian

dynamo = pytest.importorskip("torch._dynamo")
if not hasattr(torch, "compile") or not dynamo.is_dynamo_supported():
    pytest.skip("torch.compile is not supported on this platform", allow_module_level=True)

BACKEND = "aot_eager"

# dynamo reads .grad of the non-leaf tensors it passes between graphs (torch's own warning, harmless)
pytestmark = pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning")


@pytest.fixture(autouse=True)
def fresh_dynamo():
    dynamo.reset()
    yield
    dynamo.reset()


def _grads(module: nn.Module) -> dict:
    out = {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}
    module.zero_grad()
    return out


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)


def test_compiled_network_with_hmm_layer_trains_like_eager():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 4), ph.HMMLayer(4, "left_to_right"))
    compiled = torch.compile(net, backend=BACKEND)
    x = torch.randn(3, 12, 5)
    weights = torch.randn(4)

    def step(module):
        out = module(x)
        (out * weights).sum().backward()
        return out.detach(), _grads(net)

    (want, want_grads), (got, got_grads) = step(net), step(compiled)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    _assert_same(got_grads, want_grads)
    net[-1].mode = "viterbi"
    net.eval()
    with torch.no_grad():
        assert torch.equal(compiled(x), net(x))


def test_compiled_hmm_likelihood_gradients_and_viterbi_match_eager():
    g = torch.Generator().manual_seed(1)
    model = ph.HMM(Gaussian(4, 3, means=torch.randn(4, 3, generator=g) * 2, covars=torch.rand(4, 3, generator=g) + 0.5))
    x = torch.randn(3, 10, 3, generator=g)
    lengths = torch.tensor([10, 6, 8])

    def step(module):
        log_likelihood = module(x, lengths)
        log_likelihood.sum().backward()
        return log_likelihood.detach(), _grads(model)

    (want, want_grads), (got, got_grads) = step(model), step(torch.compile(model, backend=BACKEND))
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-5)
    _assert_same(got_grads, want_grads)
    paths, scores = torch.compile(model.viterbi, backend=BACKEND)(x, lengths)
    want_paths, want_scores = model.viterbi(x, lengths)
    assert torch.equal(paths, want_paths)
    torch.testing.assert_close(scores, want_scores)


def test_kernel_runs_eagerly_inside_compiled_code():
    """Only the caller's ops are compiled: one graph before the kernel call, reused (dynamic
    shapes) for every further length, never a graph of the time loop."""
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    trans = torch.randn(3, 3).log_softmax(-1)
    init = torch.zeros(3).log_softmax(-1)

    @torch.compile(backend=counting_backend)
    def loss(scores):
        return kernel.log_partition(scores.log_softmax(-1), trans, init).sum()

    for t in (5, 7, 9, 11):
        scores = torch.randn(2, t, 3, requires_grad=True)
        value = loss(scores)
        value.backward()
        torch.testing.assert_close(value, kernel.log_partition(scores.detach().log_softmax(-1), trans, init).sum())
    assert 1 <= len(graphs) <= 3
    assert all(len(gm.graph.nodes) < 20 for gm in graphs)  # the caller's few ops, no unrolled loop over time
