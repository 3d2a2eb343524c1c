from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from wgpt.checkpoint import load_checkpoint
from wgpt.errors import WgptError


class Payload:
    def __reduce__(self):
        marker = str(Path(__file__).parent / "_pwned")
        return (open, (marker, "w"))


def test_a_checkpoint_that_runs_code_is_refused_and_nothing_runs(tmp_path: Path):
    import torch

    marker = Path(__file__).parent / "_pwned"
    marker.unlink(missing_ok=True)
    evil = tmp_path / "evil.pt"
    torch.save({"format": "wgpt-checkpoint", "payload": Payload()}, evil)
    marker.unlink(missing_ok=True)  # saving may not create it, but be sure the test starts clean
    with pytest.raises(WgptError, match="refusing"):
        load_checkpoint(evil)
    assert not marker.exists()


def test_plain_pickle_and_garbage_are_refused(tmp_path: Path):
    (tmp_path / "p.pt").write_bytes(pickle.dumps({"format": "wgpt-checkpoint"}))
    (tmp_path / "g.pt").write_bytes(b"garbage" * 10)
    for name in ("p.pt", "g.pt"):
        with pytest.raises(WgptError):
            load_checkpoint(tmp_path / name)
    with pytest.raises(WgptError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
