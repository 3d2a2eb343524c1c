from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from wgpt.errors import WgptError
from wgpt.modalities.text import TextModality
from wgpt.preparation import prepare
from wgpt.shards import open_shards


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


# -- streaming: pieces, workers, shards --------------------------------------------------------
def shard_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.bin"))}


def small_pieces(monkeypatch, modality_class: type, extent: int) -> None:
    """Pieces of ``extent`` positions, so small files take the path of big ones."""
    monkeypatch.setattr(modality_class, "piece_extent", extent)


@pytest.mark.parametrize("tokenizer", ["bytes", "chars", "bpe"])
def test_workers_do_not_change_the_shards(tokenizer: str, milton: str, tmp_path: Path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    for i, size in enumerate((90_000, 30_000, 160_000, 5_000)):  # two files cut into pieces, two whole
        (src / f"part{i}.txt").write_text(milton[i * 20_000 : i * 20_000 + size], encoding="utf-8")
    small_pieces(monkeypatch, TextModality, 16_384)
    for workers in (1, 2):
        prepare(
            TextModality(tokenizer, vocab_size=500),
            [src],
            tmp_path / f"w{workers}",
            workers=workers,
            shard_tokens=50_000,
            show_progress=False,
        )
    assert shard_bytes(tmp_path / "w1") == shard_bytes(tmp_path / "w2")
    assert len(shard_bytes(tmp_path / "w1")) > 2  # several shards per split
    one, two = (json.loads((tmp_path / f"w{w}" / "meta.json").read_text()) for w in (1, 2))
    assert one["splits"] == two["splits"] and one["modality"] == two["modality"]


@pytest.mark.parametrize("tokenizer", ["bytes", "chars", "bpe"])
def test_one_big_file_and_the_same_text_in_files_give_the_same_shards(tokenizer: str, milton: str, tmp_path: Path, monkeypatch):
    """The validation tail of the big file is the last small file, so both splits hold the same text."""
    small_pieces(monkeypatch, TextModality, 8192)
    text = milton[:120_000]
    whole = tmp_path / "whole"
    whole.mkdir()
    (whole / "all.txt").write_text(text, encoding="utf-8")
    report = prepare(TextModality(tokenizer, vocab_size=500), [whole], tmp_path / "a", val_fraction=0.25, workers=2, show_progress=False)
    cut = report.validation[0]["from"]
    raw = text.encode("utf-8")
    parts = tmp_path / "parts"
    parts.mkdir()
    edges = [0, *(TextModality().boundary(whole / "all.txt", p) for p in (30_000, 61_000)), cut, len(raw)]
    for i, (a, b) in enumerate(itertools.pairwise(edges)):
        (parts / f"{i}.txt").write_bytes(raw[a:b])
    # the split of several files is a seeded shuffle: find the seed that puts the last file in validation
    seed = next(s for s in range(100) if np.random.default_rng(s).permutation(4)[0] == 3)
    prepare(TextModality(tokenizer, vocab_size=500), [parts], tmp_path / "b", val_fraction=0.25, workers=2, seed=seed, show_progress=False)
    a, b = open_shards(tmp_path / "a"), open_shards(tmp_path / "b")
    assert np.array_equal(np.asarray(a.train), np.asarray(b.train)) and np.array_equal(np.asarray(a.val), np.asarray(b.val))
    assert a.modality_spec == b.modality_spec


def test_report_lists_the_validation_files(corpus_dir: Path, tmp_path: Path):
    report = prepare(TextModality(), [corpus_dir], tmp_path / "out", workers=1, show_progress=False)
    listed = json.loads((tmp_path / "out" / "report.json").read_text())["validation"]
    assert listed == report.validation and len(listed) == 1
    val_text = bytes(np.asarray(open_shards(tmp_path / "out").val, dtype=np.uint8))
    assert Path(listed[0]["file"]).read_bytes() == val_text


def test_a_reprepared_folder_keeps_no_stale_shards(corpus_dir: Path, tmp_path: Path):
    out = tmp_path / "out"
    prepare(TextModality(), [corpus_dir], out, shard_tokens=5_000, workers=1, show_progress=False)
    (out / "notes.bin").write_bytes(b"the user's own file")
    prepare(TextModality(), [corpus_dir], out, workers=1, show_progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "notes.bin", "report.json", "train-00000.bin", "val-00000.bin"]


MEMORY_PROBE = """
import resource, sys
from pathlib import Path
from wgpt.modalities.text import TextModality
from wgpt.preparation import prepare

def data_kb():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmData"))

TextModality.piece_extent = 1 << 20
budget = int(sys.argv[3]) << 20
resource.setrlimit(resource.RLIMIT_DATA, ((data_kb() << 10) + budget, resource.RLIM_INFINITY))
prepare(TextModality(), [Path(sys.argv[1])], Path(sys.argv[2]), workers=int(sys.argv[4]), show_progress=False)
print("prepared")
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmData from /proc (Linux)")
@pytest.mark.parametrize("workers", [1, 2])
def test_prepare_runs_in_less_memory_than_the_file(milton: str, tmp_path: Path, workers: int):
    """64 MB of text under a 48 MB allowance for new data: reading the file whole, as preparation
    once did, needs more than that for the bytes alone (and 8 bytes an id on the way to the shard)."""
    big = tmp_path / "big.txt"
    with open(big, "w", encoding="utf-8") as f:
        while f.tell() < 64 << 20:
            f.write(milton)
    args = [sys.executable, "-c", MEMORY_PROBE, str(big), str(tmp_path / "out"), "48", str(workers)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "prepared" in done.stdout, done.stderr[-2000:]
    assert (
        open_shards(tmp_path / "out").meta["splits"]["train"]["tokens"] + open_shards(tmp_path / "out").meta["splits"]["val"]["tokens"]
        == big.stat().st_size
    )
    whole = [
        sys.executable,
        "-c",
        MEMORY_PROBE.replace("prepare(", "Path(sys.argv[1]).read_bytes().decode(); prepare("),
        str(big),
        str(tmp_path / "o2"),
        "48",
        "1",
    ]
    assert subprocess.run(whole, capture_output=True, text=True, timeout=300).returncode != 0  # the allowance does bind


SLOW_PREPARE = """
import sys, time
from pathlib import Path
from wgpt.modalities.text import TextModality
from wgpt.preparation import prepare

original = TextModality.encode

def slow(self, piece, facts=None):
    Path(sys.argv[3]).touch()  # the workers are at it
    time.sleep(0.2)
    return original(self, piece, facts)

TextModality.encode, TextModality.piece_extent = slow, 1 << 16
prepare(TextModality(), [Path(sys.argv[1])], Path(sys.argv[2]), workers=2, show_progress=False)
"""


def children_of(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(c) for c in (task / "children").read_text().split()}
    return found


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads process trees from /proc (Linux)")
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_killed_prepare_leaves_no_workers_and_nothing_train_accepts(how: str, milton: str, tmp_path: Path):
    import signal
    import time

    (tmp_path / "in.txt").write_text(milton * 4, encoding="utf-8")
    out, started = tmp_path / "out", tmp_path / "started"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_PREPARE, str(tmp_path / "in.txt"), str(out), str(started)], stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not started.exists() and time.time() < deadline:
        time.sleep(0.05)
    workers = children_of(proc.pid)
    assert len(workers) >= 2
    proc.send_signal(getattr(signal, how))
    proc.wait(timeout=30)
    time.sleep(0.5)
    assert not [w for w in workers if Path(f"/proc/{w}").exists() and "zombie" not in Path(f"/proc/{w}/status").read_text()]
    if how == "SIGTERM":  # cleaned up like Ctrl-C; a SIGKILL leaves hidden temporary files, but never meta.json
        assert list(out.iterdir()) == []
    with pytest.raises(WgptError, match="interrupted"):
        open_shards(out)


def test_fifos_sockets_and_devices_are_skipped_and_a_file_named_twice_counts_once(corpus_dir: Path, tmp_path: Path):
    import os
    import socket

    os.mkfifo(corpus_dir / "pipe.txt")  # reading it would block forever
    (corpus_dir / "zero.txt").symlink_to("/dev/zero")  # a device: reading it never ends
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(corpus_dir / "sock.txt"))
    (corpus_dir / "again.txt").symlink_to(corpus_dir / "part0.txt")
    try:
        report = prepare(TextModality(), [corpus_dir, corpus_dir / "part1.txt"], tmp_path / "out", workers=1, show_progress=False)
    finally:
        server.close()
    reason = "not a regular file (a FIFO, socket or device)"
    assert report.files == 3 and [(Path(p).name, r) for p, r in report.skipped] == [
        ("pipe.txt", reason),
        ("sock.txt", reason),
        ("zero.txt", reason),
    ]
    assert report.tokens["train"] + report.tokens["val"] == 3 * 20_000
