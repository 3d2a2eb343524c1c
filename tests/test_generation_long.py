"""Generation past the context: cached equals uncached, the window policy, batches, threads."""

from __future__ import annotations

import gc
import itertools

import pytest
import torch

from wgpt.config import ModelConfig
from wgpt.generation import generate, step_threads
from wgpt.model import GPT

VARIANTS = ["none", "haar", "learnable"]


def model_for(wavelet: str, context: int = 16, position: str = "learned", d_ff: int = 64) -> GPT:
    torch.manual_seed(7)
    cfg = ModelConfig(vocab_size=40, n_layer=2, n_head=2, d_model=32, d_ff=d_ff, context=context, wavelet=wavelet, position=position)
    model = GPT(cfg)
    with torch.no_grad():  # larger weights than the init, so that path differences would show
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def record_calls(model: GPT) -> list[dict]:
    """Every pass of ``model``, window or one-token step (generation calls ``forward`` for both): new tokens, cache length before, the cache, threads, last logits."""
    calls: list[dict] = []

    def before(module, args, kwargs):
        cache = kwargs.get("cache")
        calls.append({"n": args[0].shape[1], "pos0": 0 if cache is None else cache.length, "cache": cache})
        calls[-1]["threads"] = torch.get_num_threads()

    def after(module, args, kwargs, output):
        calls[-1]["logits"] = output[0][:, -1].clone()

    model.register_forward_pre_hook(before, with_kwargs=True)
    model.register_forward_hook(after, with_kwargs=True)
    return calls


@pytest.mark.parametrize("wavelet", VARIANTS)
@pytest.mark.parametrize("position", ["learned", "rope"])
@pytest.mark.parametrize("prompt_len", [1, 16])  # one token; a prompt that fills the context
def test_greedy_six_contexts_long_is_the_same_with_and_without_cache(wavelet, position, prompt_len):
    model = model_for(wavelet, position=position)
    prompt = [(3 * i) % 40 for i in range(1, prompt_len + 1)]
    cached = generate(model, prompt, 96, top_k=1)
    uncached = generate(model, prompt, 96, top_k=1, use_cache=False)
    assert len(cached[0]) == 96
    assert cached == uncached


@pytest.mark.parametrize("wavelet", VARIANTS)
@pytest.mark.parametrize("position", ["learned", "rope"])
def test_logits_agree_at_every_step_past_the_context(wavelet, position):
    # Sampled, not greedy: greedy random models fall into short loops, sampling visits many tokens.
    model = model_for(wavelet, context=12, position=position)
    calls = record_calls(model)
    cached = generate(model, [5, 1, 9], 60, seed=1)
    cached_logits = torch.cat([c["logits"] for c in calls])  # (60, V)
    calls.clear()
    uncached = generate(model, [5, 1, 9], 60, seed=1, use_cache=False)
    assert cached == uncached
    assert len(set(cached[0])) > 10
    torch.testing.assert_close(cached_logits, torch.cat([c["logits"] for c in calls]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("context", [15, 16])
def test_the_cache_never_outgrows_the_context_and_re_encodes_half_of_it(context):
    model = model_for("haar", context=context)
    calls = record_calls(model)
    generate(model, [1, 2, 3], 5 * context, top_k=1)
    assert len(calls) == 5 * context  # one forward per new token
    assert all(c["pos0"] + c["n"] <= context for c in calls)
    assert all(c["cache"].length <= context for c in calls)
    prefills = [i for i, c in enumerate(calls) if c["pos0"] == 0]
    assert calls[0]["n"] == 3 and prefills[1] - prefills[0] == context - 3 + 1
    assert [calls[i]["n"] for i in prefills[1:]] == [context // 2] * (len(prefills) - 1)
    gaps = [b - a - 1 for a, b in itertools.pairwise(prefills[1:])]
    assert gaps and set(gaps) == {context - context // 2}  # one-token steps between re-encodes
    assert all(calls[i]["n"] == 1 for i in range(len(calls)) if i not in prefills)


def test_uncached_decoding_sees_the_same_windows_as_cached():
    model = model_for("learnable")
    calls = record_calls(model)
    generate(model, [4, 4], 70, top_k=1)
    cached_windows = [c["pos0"] + c["n"] for c in calls]
    calls.clear()
    generate(model, [4, 4], 70, top_k=1, use_cache=False)
    assert [c["n"] for c in calls] == cached_windows
    assert max(cached_windows) == 16


@pytest.mark.parametrize("wavelet", VARIANTS)
def test_greedy_rows_do_not_depend_on_the_batch(wavelet):
    model = model_for(wavelet)
    one = generate(model, [2, 7], 40, top_k=1)
    three = generate(model, [2, 7], 40, top_k=1, num_samples=3)
    assert three == one * 3


def test_sampled_batches_match_between_paths_for_a_seed():
    model = model_for("haar")
    kwargs = {"temperature": 0.8, "top_p": 0.9, "num_samples": 3, "seed": 4}
    cached = generate(model, [1], 48, **kwargs)
    assert cached == generate(model, [1], 48, use_cache=False, **kwargs)
    assert len({tuple(row) for row in cached}) == 3  # the rows are distinct samples


def test_on_step_sees_every_new_column_once():
    model = model_for("haar")
    columns: list[torch.Tensor] = []
    out = generate(model, [1], 37, num_samples=2, seed=3, on_step=columns.append)
    assert len(columns) == 37
    assert all(c.shape == (2,) for c in columns)
    assert torch.stack(columns, dim=1).tolist() == out


def test_one_token_steps_run_on_one_thread_and_prefills_on_the_callers():
    model = model_for("haar", context=32, d_ff=2048)  # a 20-token prefill is above torch's grain
    calls = record_calls(model)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        generate(model, list(range(20)), 30, top_k=1)
        assert torch.get_num_threads() == 2  # the caller's setting is back
    finally:
        torch.set_num_threads(before)
    assert [c["threads"] for c in calls if c["n"] >= 16] == [2, 2]  # the prompt and one re-encode
    assert {c["threads"] for c in calls if c["n"] == 1} == {1}


def test_settings_are_restored_when_a_callback_fails():
    seen = []

    def boom(_column):
        seen.append((torch.backends.mkldnn.enabled, gc.isenabled()))
        raise RuntimeError("stop")

    before = torch.get_num_threads()
    assert torch.backends.mkldnn.enabled and gc.isenabled()
    with pytest.raises(RuntimeError, match="stop"):
        generate(model_for("none"), [1, 2], 10, on_step=boom)
    assert seen == [(False, False)]  # oneDNN and the cyclic collector are off while decoding
    assert torch.get_num_threads() == before and torch.backends.mkldnn.enabled and gc.isenabled()


def test_step_threads_follow_the_work_per_step():
    assert step_threads(1, 512, 4) == 1  # one token of the tiny preset
    assert step_threads(63, 512, 4) == 1
    assert step_threads(64, 512, 4) == 4  # 64 x 512 reaches torch's grain of 32768
    assert step_threads(16, 3072, 4) == 4  # a batch of 16 at GPT-2's width
