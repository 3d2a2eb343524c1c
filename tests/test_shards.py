"""Token shards on disk: several files per split read as one, checked on opening, older folders still read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wgpt import shards as shards_module
from wgpt.errors import WgptError
from wgpt.modalities.text import TextModality
from wgpt.preparation import prepare
from wgpt.shards import TokenStream, checksum_of, open_shards, shard_dtype


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


def test_large_vocabularies_use_uint32():
    assert shard_dtype(65_536) == np.dtype("<u2")
    assert shard_dtype(65_537) == np.dtype("<u4")


def test_a_multi_shard_folder_reads_back_token_for_token(corpus_dir: Path, tmp_path: Path):
    prepare(TextModality(), [corpus_dir], tmp_path / "many", shard_tokens=7_000, workers=1, show_progress=False)
    prepare(TextModality(), [corpus_dir], tmp_path / "one", workers=1, show_progress=False)
    many, one = open_shards(tmp_path / "many", verify=True), open_shards(tmp_path / "one")
    meta = many.meta["splits"]["train"]
    assert len(meta["shards"]) == -(-meta["tokens"] // 7_000) and all(s["tokens"] == 7_000 for s in meta["shards"][:-1])
    for split in ("train", "val"):
        a, b = getattr(many, split), getattr(one, split)
        assert len(a) == len(b) and np.array_equal(np.asarray(a), np.asarray(b))
    rng = np.random.default_rng(0)
    for start in rng.integers(0, len(one.train) - 20_000, 50).tolist():  # windows across shard boundaries
        assert np.array_equal(many.train[start : start + 20_000], one.train[start : start + 20_000])


def test_a_version_1_folder_still_opens(corpus_dir: Path, tmp_path: Path):
    """Folders written before shards were split into files: one train.bin and one val.bin."""
    out = tmp_path / "v1"
    prepare(TextModality(), [corpus_dir], out, workers=1, show_progress=False)
    meta = json.loads((out / "meta.json").read_text())
    for split in ("train", "val"):
        (out / f"{split}-00000.bin").rename(out / f"{split}.bin")
        del meta["splits"][split]["shards"]
        meta["splits"][split].update(file=f"{split}.bin", sha256=checksum_of(out / f"{split}.bin", "sha256"))
    meta["version"] = 1
    (out / "meta.json").write_text(json.dumps(meta))
    shards = open_shards(out, verify=True)
    assert len(shards.train) == meta["splits"]["train"]["tokens"] and shards.val[:5].tolist() == list(np.asarray(shards.val)[:5])


def test_big_folders_are_checksummed_only_when_asked(corpus_dir: Path, tmp_path: Path, monkeypatch):
    out = tmp_path / "out"
    prepare(TextModality(), [corpus_dir], out, workers=1, show_progress=False)
    data = bytearray((out / "val-00000.bin").read_bytes())
    data[0] ^= 1
    (out / "val-00000.bin").write_bytes(bytes(data))
    monkeypatch.setattr(shards_module, "CHECKSUM_LIMIT", 1000)  # the folder now counts as big
    assert len(open_shards(out).val) == len(data) // 2  # opens, checking sizes only
    with pytest.raises(WgptError, match="corrupt"):
        open_shards(out, verify=True)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 999), max_size=20), max_size=6), st.integers(0, 130), st.integers(0, 130))
def test_a_token_stream_reads_like_its_files_end_to_end(parts, start, length):
    arrays = [np.asarray(p, dtype=np.uint16) for p in parts]
    whole = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.uint16)
    stream = TokenStream(arrays, np.dtype(np.uint16))
    assert len(stream) == whole.size and np.array_equal(np.asarray(stream), whole)
    assert np.array_equal(stream[start : start + length], whole[start : start + length])
