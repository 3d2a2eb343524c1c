"""The Triton kernels (``wgpt.wavelet_triton``) against the torch path, forward and backward.

Without CUDA, Triton's interpreter runs the kernels on CPU tensors. Triton reads
``TRITON_INTERPRET`` when it decorates a kernel, its own ``tl.*`` helpers included (at
``import triton``), and again when it imports some of its submodules during a launch, so the
variable must be set before Triton is first imported and stay set. A test module is too late
for that: pytest imports every test module before it runs any test, and some import Triton
indirectly (``torch.utils.flop_counter`` does), so ``tests/conftest.py`` sets it on machines
without CUDA. Where Triton runs compiled all the same (CUDA, or the variable set to 0), the CPU
cases skip and say why; the ``gpu`` cases check the same on the device. Shapes are odd on
purpose: T, B and both halves of C are not powers of two, and some cases span two blocks of rows
and two of coordinates.
"""

from __future__ import annotations

import copy
import importlib.util

import pytest
import torch

import wgpt.wavelet as wavelet
from wgpt.config import ModelConfig
from wgpt.model import GPT
from wgpt.wavelet import WaveletMix

if importlib.util.find_spec("triton") is None:
    pytest.skip("the kernels need Triton: pip install 'wgpt[triton]'", allow_module_level=True)

from wgpt import wavelet_triton

INTERPRETED = type(wavelet_triton._forward_kernel).__name__ == "InterpretedFunction"
# The interpreters of Triton 3.3 and 3.6 fail on a loop bound under numpy 2 (int() of a 1-element array); 3.7.1 and 3.9.0 run these.
OLD_INTERPRETER = tuple(int(part) for part in wavelet_triton.triton.__version__.split(".")[:2]) < (3, 7)
on_cpu = pytest.mark.skipif(
    not INTERPRETED or OLD_INTERPRETER,
    reason="Triton runs compiled here (CUDA present, or TRITON_INTERPRET not 1 at its first import: see tests/conftest.py), "
    "or its interpreter is older than 3.7: the gpu cases cover the kernels",
)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# (batch, time, width, context): H = 11 in one block of rows; H = 36 over two blocks of 32
# coordinates and T = 100 over two blocks of 64 rows, with windows up to 128 crossing them.
SHAPES = [(3, 37, 22, 64), (1, 100, 71, 128)]


def with_kernel(monkeypatch: pytest.MonkeyPatch, kernel: str) -> None:
    monkeypatch.setattr(wavelet, "KERNEL", kernel)


def layer(width: int, context: int, learnable: bool, dtype: torch.dtype = torch.float32) -> WaveletMix:
    """A wavelet layer; a learnable one moved off its one-hot start so every tap carries weight."""
    torch.manual_seed(0)
    mix = WaveletMix(width, context, learnable).to(dtype)
    if learnable:
        with torch.no_grad():
            mix.mix.add_(0.3 * torch.randn_like(mix.mix))
    return mix


def pass_through(mix: WaveletMix, h: torch.Tensor, grad: torch.Tensor, kernel: str, monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    """Output, gradient of ``h`` and (learnable) of the mixture, computed by ``kernel``."""
    with_kernel(monkeypatch, kernel)
    mix = copy.deepcopy(mix)
    h = h.clone().requires_grad_()
    out = mix(h)
    out.backward(grad)
    return [out.detach(), h.grad] + ([] if mix.mix is None else [mix.mix.grad])


def assert_same(got: list[torch.Tensor], want: list[torch.Tensor], tol: float | None) -> None:
    """Equal within ``tol`` of each tensor's largest magnitude (the mix gradient sums B*T terms); ``None``: dtype defaults."""
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        if tol is None:
            torch.testing.assert_close(a, b)
        else:
            torch.testing.assert_close(a, b, rtol=tol, atol=tol * max(1.0, b.abs().max().item()))


def check_parity(shape, learnable: bool, dtype: torch.dtype, device: str, tol: float | None, monkeypatch) -> None:
    bsz, n, width, context = shape
    mix = layer(width, context, learnable).to(device)
    gen = torch.Generator().manual_seed(1)
    h = torch.randn(bsz, n, width, generator=gen).to(device, dtype)
    grad = torch.randn(bsz, n, width, generator=gen).to(device, dtype)
    if dtype == torch.float64:
        mix = mix.double()
    want = pass_through(mix, h, grad, "torch", monkeypatch)
    got = pass_through(mix, h, grad, "triton", monkeypatch)
    assert_same(got, want, tol)
    assert torch.equal(got[0][..., : width // 2], h[..., : width // 2])  # the first half is copied, bit for bit
    assert torch.equal(got[1][..., : width // 2], grad[..., : width // 2])


@on_cpu
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("learnable", [False, True])
def test_kernels_match_the_torch_path_in_fp32(shape, learnable, monkeypatch):
    check_parity(shape, learnable, torch.float32, "cpu", 1e-5, monkeypatch)


@on_cpu
@pytest.mark.parametrize("learnable", [False, True])
def test_kernels_match_the_torch_path_in_bf16(learnable, monkeypatch):
    """Both sum bf16 inputs in fp32 and round once: outputs and input gradients agree to bf16's rounding."""
    check_parity(SHAPES[1], learnable, torch.bfloat16, "cpu", None, monkeypatch)


@on_cpu
@pytest.mark.parametrize("learnable", [False, True])
def test_kernels_are_exact_to_fp64(learnable, monkeypatch):
    """In fp64 the kernels sum in fp64: equal to the torch path (held to a dense fp64 matrix in test_wavelet) to 1e-12."""
    check_parity(SHAPES[1], learnable, torch.float64, "cpu", 1e-12, monkeypatch)


@on_cpu
@pytest.mark.parametrize("wavelet_kind", ["haar", "learnable"])
def test_a_model_trains_the_same_through_the_kernels(wavelet_kind, monkeypatch):
    """The whole model through WaveletMix's dispatch: same loss and parameter gradients with the kernels forced."""
    torch.manual_seed(2)
    model = GPT(ModelConfig(vocab_size=40, n_layer=2, n_head=2, d_model=26, d_ff=32, context=64, wavelet=wavelet_kind))
    if wavelet_kind == "learnable":
        with torch.no_grad():
            for block in model.blocks:
                block.wavelet.mix.add_(0.2 * torch.randn_like(block.wavelet.mix))
    idx = torch.randint(0, 40, (3, 45))
    results = {}
    for kernel in ("torch", "triton"):
        with_kernel(monkeypatch, kernel)
        model.zero_grad(set_to_none=True)
        _, loss = model(idx, idx)
        loss.backward()
        results[kernel] = [loss.detach()] + [p.grad.clone() for p in model.parameters()]
    assert_same(results["triton"], results["torch"], 1e-5)


def test_auto_dispatch_runs_the_kernels_on_cuda_tensors_only(monkeypatch):
    with_kernel(monkeypatch, "auto")
    assert not wavelet.fused(torch.zeros(1, 2, 4))
    with_kernel(monkeypatch, "triton")
    assert wavelet.fused(torch.zeros(1, 2, 4))
    with_kernel(monkeypatch, "torch")
    assert not wavelet.fused(torch.zeros(1, 2, 4))


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("learnable", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [*SHAPES, (4, 512, 128, 512)])  # the last: the paper model's width and context
def test_kernels_match_the_torch_path_on_cuda(shape, dtype, learnable, monkeypatch):
    check_parity(shape, learnable, dtype, "cuda", 1e-5 if dtype == torch.float32 else None, monkeypatch)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("wavelet_kind", ["haar", "learnable"])
def test_compiled_model_runs_the_kernels_without_a_graph_break(wavelet_kind, monkeypatch):
    """``torch.compile(fullgraph=True)`` raises on a graph break; the kernels' operator is in the graph; compiled equals eager."""
    with_kernel(monkeypatch, "auto")
    torch.manual_seed(3)
    cfg = ModelConfig(vocab_size=64, n_layer=2, n_head=4, d_model=128, d_ff=256, context=256, wavelet=wavelet_kind)
    model = GPT(cfg).cuda()
    idx = torch.randint(0, 64, (4, 256), device="cuda")
    compiled = torch.compile(model, fullgraph=True)
    results = []
    for forward in (model, compiled):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            _, loss = forward(idx, idx)
        loss.backward()
        results.append([loss.detach().float()] + [p.grad.float() for p in model.parameters()])
    assert_same(results[1], results[0], 2e-2)
    explained = torch._dynamo.explain(model)(idx, idx)
    assert explained.graph_break_count == 0
    assert any("wgpt.wavelet_taps" in str(graph.graph) for graph in explained.graphs)


@on_cpu
@pytest.mark.parametrize("wavelet_kind", ["haar", "learnable"])
def test_compile_traces_the_kernels_as_one_operator(wavelet_kind, monkeypatch):
    """Dynamo and AOTAutograd (``aot_eager``: no code generation, so it runs here) trace the operator's
    schema, fake and backward: ``fullgraph=True`` raises on a graph break, and the compiled step equals eager."""
    with_kernel(monkeypatch, "triton")
    torch.manual_seed(4)
    model = GPT(ModelConfig(vocab_size=40, n_layer=1, n_head=2, d_model=26, d_ff=32, context=64, wavelet=wavelet_kind))
    idx = torch.randint(0, 40, (3, 45))
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    results = []
    for forward in (model, compiled):
        model.zero_grad(set_to_none=True)
        _, loss = forward(idx, idx)
        loss.backward()
        results.append([loss.detach()] + [p.grad.clone() for p in model.parameters()])
    assert_same(results[1], results[0], 1e-6)
    explained = torch._dynamo.explain(model)(idx, idx)
    assert explained.graph_break_count == 0
    assert any("wgpt.wavelet_taps" in str(graph.graph) for graph in explained.graphs)
