"""DDP under torchrun: two gloo processes on CPU train like one process with the same global batch.

The two-process runs go through the real launcher and CLI (``torchrun -m wgpt train``), as a user
would start them; the single-process references run in this process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from wgpt import devices
from wgpt import distributed as dist
from wgpt.checkpoint import load_checkpoint
from wgpt.cli import app
from wgpt.config import ModelConfig, TrainConfig, to_dict
from wgpt.errors import WgptError
from wgpt.modalities.text import TextModality
from wgpt.model import GPT
from wgpt.preparation import prepare
from wgpt.training import read_metrics, train

# The learnable wavelet, so that its filters must be synchronised too.
MODEL = ModelConfig(n_layer=2, n_head=2, d_model=32, d_ff=64, context=32, wavelet="learnable")
# warmup >= every --steps used here makes the learning rate (step + 1) / warmup * lr whatever
# --steps says, so a run to step 8 is exactly the first 8 steps of a run to step 12.
TRAIN = TrainConfig(steps=12, batch_size=4, lr=3e-3, warmup=16, eval_interval=4, eval_batches=2, device="cpu")

# Both runs are fp32 on one thread per process and see the same rows; only the order of additions
# differs: each process averages the loss of 2 rows and DDP averages the two gradients, where one
# process averages 4. Each such sum is off by a few ulps (~1e-7 relative), and Adam turns that into
# relative differences of the same size in the updates: after 12 steps the losses (~5 nats) agreed
# to 4e-7. 1e-4 leaves room for other BLAS builds and is far below what a wrong split gives: both
# processes training on the first half of each batch moves every logged loss by 1e-2 to 3e-2.
TOL = 1e-4


def flags(cfg: ModelConfig, run: TrainConfig) -> list[str]:
    """The CLI flags that give ``cfg`` and ``run`` on top of the tiny preset."""
    pairs = {
        "--wavelet-kind": cfg.wavelet,
        "--layers": cfg.n_layer,
        "--heads": cfg.n_head,
        "--width": cfg.d_model,
        "--ffn": cfg.d_ff,
        "--context": cfg.context,
        "--batch-size": run.batch_size,
        "--lr": run.lr,
        "--warmup": run.warmup,
        "--eval-interval": run.eval_interval,
        "--eval-batches": run.eval_batches,
        "--device": run.device,
    }
    return [str(x) for pair in pairs.items() for x in pair]


def torchrun(*args: str | Path) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=2 -m wgpt train ARGS``; standalone picks free ports."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread per process: 2 processes, 2 cores
    result = subprocess.run([*launcher, "-m", "wgpt", "train", *map(str, args)], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def assert_losses_match(rows: list[dict], reference: list[dict]) -> None:
    assert [r["step"] for r in rows] == [r["step"] for r in reference[: len(rows)]]
    for row, ref in zip(rows, reference, strict=False):
        assert row["train_loss"] == pytest.approx(ref["train_loss"], abs=TOL), row["step"]
        assert row["val_loss"] == pytest.approx(ref["val_loss"], abs=TOL), row["step"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One thread here too, as in each torchrun process; 2 threads on 2 busy cores can run 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, milton: str) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    (root / "corpus").mkdir()
    for i in range(3):
        (root / "corpus" / f"part{i}.txt").write_text(milton[i * 20_000 : (i + 1) * 20_000], encoding="utf-8")
    prepare(TextModality(), [root / "corpus"], root / "data", workers=1, show_progress=False)
    return root / "data"


@pytest.fixture(scope="module")
def reference(data: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Metrics rows of one process training without a break to step 12."""
    out = tmp_path_factory.mktemp("reference")
    train(data, out, MODEL, TRAIN, show_progress=False)
    return read_metrics(out / "metrics.jsonl")


def test_two_processes_train_like_one_and_resume_alone(data: Path, reference: list[dict], tmp_path: Path):
    out = tmp_path / "ddp"
    result = torchrun("--data", data, "--out", out, "--steps", 8, *flags(MODEL, TRAIN))
    assert json.loads((out / "config.json").read_text())["model"] == to_dict(replace(MODEL, vocab_size=256))
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [4, 8]  # rank 0 alone writes: one row per evaluation
    assert_losses_match(rows, reference)
    assert load_checkpoint(out / "last.pt")["step"] == 8
    assert result.stdout.count("best val loss") == 1  # rank 0 alone prints the summary
    assert result.stderr.count("training ━") == 1  # and shows progress

    resumed = CliRunner().invoke(app, ["train", "--out", str(out), "--resume", "--steps", "12", "-q"])
    assert resumed.exit_code == 0, resumed.output
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [4, 8, 12]
    assert_losses_match(rows, reference)


def test_one_process_checkpoint_resumes_under_two(data: Path, reference: list[dict], tmp_path: Path):
    out = tmp_path / "single"
    train(data, out, MODEL, replace(TRAIN, steps=4), show_progress=False)
    torchrun("--out", out, "--resume", "--steps", 8, "-q")
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [4, 8]
    assert_losses_match(rows, reference)


@pytest.mark.parametrize("cfg", [MODEL, ModelConfig(n_layer=1, d_model=64, d_ff=96, context=64, vocab_size=512, position="rope")])
def test_flops_per_token_counts_every_matmul_of_a_training_step(cfg: ModelConfig):
    """Parity with PyTorch's FLOP counter; the math kernel runs attention as countable matmuls."""
    model, x = GPT(cfg), torch.randint(0, cfg.vocab_size, (2, cfg.context))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        _, loss = model(x, x)
        loss.backward()
    assert dist.flops_per_token(cfg) == counter.get_total_flops() / x.numel()


@pytest.mark.parametrize(
    ("name", "peak"),
    [("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12), ("NVIDIA A100-SXM4-80GB", 312e12), ("NVIDIA A10G", None)],
)
def test_peak_flops_reads_the_card_name(name: str, peak: float | None):
    assert dist.peak_flops(name) == peak


def test_outside_torchrun_one_process_does_everything(monkeypatch: pytest.MonkeyPatch):
    for var in ("WORLD_SIZE", "RANK"):
        monkeypatch.delenv(var, raising=False)
    ctx = dist.setup("cpu")
    assert not ctx.active and ctx.is_main and dist.is_main_process()
    assert ctx.mean(torch.tensor(2.5)) == 2.5 and ctx.from_main(1.5) == 1.5 and ctx.any(True)
    monkeypatch.setenv("RANK", "1")
    assert not dist.is_main_process()


@pytest.mark.parametrize("device", ["mps", "cuda:1"] + ([] if torch.cuda.is_available() else ["cuda"]))
def test_torchrun_refuses_devices_it_cannot_split(device: str):
    with pytest.raises(WgptError, match="--device"):
        devices.process_device(device, local_rank=0)


GPU_CHECK = Path(__file__).parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", GPU_CHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_runs_small_on_a_cpu(gpu_check):
    (model_cfg, train_cfg) = gpu_check.shapes(["paper"], quick=True)["paper"]
    check = gpu_check.parity(model_cfg, train_cfg, torch.device("cpu"), steps=3)
    assert check["max_abs_diff"] == 0.0 and check["ok"]  # CPU against CPU: same weights, same batches, same bits
    assert check["cpu"][-1] < check["cpu"][0]  # the steps train
    rows = gpu_check.throughput("paper", model_cfg, train_cfg, ["none", "haar"], torch.device("cpu"), rounds=1, compile=False)
    assert [r["variant"] for r in rows] == ["none", "haar"] and rows[0]["time_ratio"] == 1.0
    for r in rows:
        assert r["tokens_per_s"] == pytest.approx(r["batch"] * r["context"] / r["ms_per_step"] * 1e3)
        assert r["mfu"] is None  # no peak is known for a CPU


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_check_on_cuda(tmp_path: Path):
    out = tmp_path / "gpu_check.json"
    subprocess.run([sys.executable, str(GPU_CHECK), "--presets", "paper", "--rounds", "3", "--json-out", str(out)], check=True, timeout=600)
    result = json.loads(out.read_text())
    assert all(check["ok"] for check in result["parity"].values()), result["parity"]
    known_peak = dist.peak_flops(torch.cuda.get_device_name()) is not None
    for r in result["throughput"]:
        assert r["flash"], r
        assert not known_peak or 0 < r["mfu"] < 1, r


def test_gpu_check_graph_rows_are_the_ratio_of_two_timed_runs(gpu_check, monkeypatch):
    """Part 3's plumbing on a CPU: the compiled run is asked for reduce-overhead, and each row's ratio is its own two figures'."""
    modes = []
    monkeypatch.setattr(gpu_check.torch, "compile", lambda model, mode="default": modes.append(mode) or model)
    (model_cfg, train_cfg) = gpu_check.shapes(["paper"], quick=True)["paper"]
    rows = gpu_check.graph_speedup("paper", model_cfg, train_cfg, ["none", "haar"], torch.device("cpu"), rounds=1)
    assert modes == ["reduce-overhead", "reduce-overhead"]
    assert [r["variant"] for r in rows] == ["none", "haar"]
    for r in rows:
        assert r["speedup"] == pytest.approx(r["graphs_tokens_per_s"] / r["eager_tokens_per_s"])
    assert "| paper | haar |" in gpu_check.graph_table(rows)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_training_steps_on_cuda(gpu_check):
    (model_cfg, train_cfg) = gpu_check.shapes(["paper"], quick=False)["paper"]
    rows = gpu_check.graph_speedup("paper", model_cfg, train_cfg, ["haar"], torch.device("cuda"), rounds=3)
    assert rows[0]["graphs_tokens_per_s"] > 0 and rows[0]["speedup"] > 1.0, rows
