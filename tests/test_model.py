"""The GPT core on fixed seeds: golden values that pin initialisation and the forward pass."""

from __future__ import annotations

import pytest
import torch

from wgpt.config import ModelConfig
from wgpt.model import GPT

# A fixed-seed 2-block model's loss and logits at two positions, per variant (torch 2.13, CPU, fp32).
# The learnable variant equals the fixed one at initialisation, so their values coincide.
GOLDEN = {
    "none": (4.167295, [-0.084995, 0.018752, -0.026773, 0.040443], [-0.099299, -0.055725, -0.057025, 0.281411]),
    "haar": (4.153322, [-0.034625, 0.068759, 0.080767, -0.038319], [0.069852, -0.079743, -0.129989, 0.229395]),
    "learnable": (4.153322, [-0.034625, 0.068759, 0.080767, -0.038319], [0.069852, -0.079743, -0.129989, 0.229395]),
}


@pytest.mark.parametrize("kind", sorted(GOLDEN))
def test_a_fixed_seed_model_gives_the_golden_loss_and_logits(kind: str):
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=64, n_layer=2, n_head=2, d_model=32, d_ff=64, context=32, wavelet=kind)).eval()
    idx = (torch.arange(2 * 32).view(2, 32) * 7) % 64
    with torch.no_grad():
        logits, loss = model(idx, (idx + 1) % 64)
    golden_loss, last, early = GOLDEN[kind]
    assert loss.item() == pytest.approx(golden_loss, abs=1e-5)
    assert logits[0, -1, :4].tolist() == pytest.approx(last, abs=1e-5)
    assert logits[1, 5, :4].tolist() == pytest.approx(early, abs=1e-5)
