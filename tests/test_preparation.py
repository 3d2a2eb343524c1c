from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wgpt.batches import eval_offsets, get_batch, train_offsets
from wgpt.errors import WgptError
from wgpt.modalities.text import TextModality
from wgpt.preparation import prepare
from wgpt.shards import open_shards, shard_dtype


def test_prepare_folder_skips_and_reports_bad_files(corpus_dir: Path, tmp_path: Path):
    (corpus_dir / "broken.txt").write_bytes(b"\x00\x01binary")
    (corpus_dir / "nested").mkdir()
    (corpus_dir / "nested" / "deep.txt").write_text("a nested file\n" * 100, encoding="utf-8")
    (corpus_dir / "ignored.bin").write_bytes(b"not picked up")
    report = prepare(TextModality(), [corpus_dir], tmp_path / "out", workers=1, show_progress=False)
    assert report.files == 4
    assert [Path(p).name for p, _ in report.skipped] == ["broken.txt"]
    listed = json.loads((tmp_path / "out" / "report.json").read_text())
    assert listed["skipped"][0]["path"].endswith("broken.txt")
    shards = open_shards(tmp_path / "out")
    total_bytes = sum(f.stat().st_size for f in corpus_dir.rglob("*.txt")) - (corpus_dir / "broken.txt").stat().st_size
    assert len(shards.train) + len(shards.val) == total_bytes  # bytes tokenizer: one token per byte


def test_split_is_by_file(corpus_dir: Path, tmp_path: Path):
    prepare(TextModality(), [corpus_dir], tmp_path / "out", workers=1, show_progress=False)
    shards = open_shards(tmp_path / "out")
    val_text = bytes(np.asarray(shards.val, dtype=np.uint8)).decode()
    matching = [f for f in corpus_dir.glob("*.txt") if f.read_text() == val_text]
    assert len(matching) == 1  # validation is exactly one whole file


def test_parallel_workers_give_the_same_shards(corpus_dir: Path, tmp_path: Path):
    prepare(TextModality("chars"), [corpus_dir], tmp_path / "a", workers=1, show_progress=False)
    prepare(TextModality("chars"), [corpus_dir], tmp_path / "b", workers=2, show_progress=False)
    a, b = (json.loads((tmp_path / d / "meta.json").read_text()) for d in "ab")
    assert a["splits"] == b["splits"] and a["modality"] == b["modality"]


def test_missing_source_and_empty_folder_are_clear_errors(tmp_path: Path):
    with pytest.raises(WgptError, match="does not exist"):
        prepare(TextModality(), [tmp_path / "nope"], tmp_path / "out", show_progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(WgptError, match="no files"):
        prepare(TextModality(), [tmp_path / "empty"], tmp_path / "out", show_progress=False)


def test_folder_of_only_bad_files_is_an_error(tmp_path: Path):
    (tmp_path / "a.txt").write_bytes(b"\x00\x00")
    (tmp_path / "b.txt").write_bytes(b"")
    with pytest.raises(WgptError, match="no usable text files among 2"):
        prepare(TextModality(), [tmp_path], tmp_path / "out", workers=1, show_progress=False)


def test_interrupted_or_tampered_shards_are_refused(corpus_dir: Path, tmp_path: Path):
    out = tmp_path / "out"
    prepare(TextModality(), [corpus_dir], out, workers=1, show_progress=False)
    data = bytearray((out / "train-00000.bin").read_bytes())
    data[10] ^= 0xFF
    (out / "train-00000.bin").write_bytes(bytes(data))
    with pytest.raises(WgptError, match="corrupt"):
        open_shards(out)
    (out / "train-00000.bin").write_bytes(bytes(data[:-2]))
    with pytest.raises(WgptError, match="does not match"):
        open_shards(out)
    (out / "meta.json").unlink()
    with pytest.raises(WgptError, match="interrupted"):
        open_shards(out)


def test_batches_depend_only_on_seed_and_step():
    a = train_offsets(10_000, 32, 8, seed=1, step=5)
    assert torch.equal(a, train_offsets(10_000, 32, 8, seed=1, step=5))
    assert not torch.equal(a, train_offsets(10_000, 32, 8, seed=1, step=6))
    assert not torch.equal(a, train_offsets(10_000, 32, 8, seed=2, step=5))
    assert a.max() < 10_000 - 32
    ev = eval_offsets(1000, 32, 4)
    assert ev.tolist() == eval_offsets(1000, 32, 4).tolist() and ev[0] == 0 and ev[-1] == 1000 - 33


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 300), min_size=34, max_size=200), st.integers(0, 10))
def test_batches_are_shifted_windows_of_the_shard(ids, seed):
    data = np.asarray(ids, dtype=shard_dtype(301))
    offsets = train_offsets(len(data), 32, 3, seed=seed, step=0)
    x, y = get_batch(data, offsets, 32)
    for row, o in enumerate(offsets.tolist()):
        assert x[row].tolist() == ids[o : o + 32]
        assert y[row].tolist() == ids[o + 1 : o + 33]


def test_large_vocabularies_use_uint32():
    assert shard_dtype(65_536) == np.dtype("<u2")
    assert shard_dtype(65_537) == np.dtype("<u4")
