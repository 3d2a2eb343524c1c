"""How `wgpt prepare` scales: peak memory and throughput at two corpus sizes, beside a reference.

Builds corpora of the sizes asked for from any input (text repeated to N MB in one file, audio
files copied over and over to N hours, MIDI files copied to N files; copies, not links, since
prepare counts a file reached through two paths once), runs the real command
(`wgpt prepare ... -q`) under `/usr/bin/time -v` for its peak resident memory, and runs a
reference on the same input in the same rounds:

- text, bytes: a minimal numpy read and write of uint16 ids (`np.fromfile(...).astype(...).tofile`);
- text, BPE: Hugging Face `tokenizers` fed ~1 MB pieces, `train_from_iterator` then `encode_batch`
  (the same trainer settings as wgpt, all cores);
- audio, MIDI: none (the question there is whether memory stays flat as the corpus grows).

Rounds are interleaved (wgpt, reference, next size, ...) and the fastest of each is kept; peak
memory is the largest seen. The JSON written with --json holds every run. Examples:

    python benchmarks/prepare_scale.py text shakespeare.txt --sizes 40,400 --tokenizer bytes
    python benchmarks/prepare_scale.py text shakespeare.txt --sizes 4,40 --tokenizer bpe
    python benchmarks/prepare_scale.py audio ~/music --sizes 0.2,2      # hours
    python benchmarks/prepare_scale.py midi ~/midi --sizes 2000,20000   # files
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

UNITS = {"text": "MB", "audio": "hours", "midi": "files"}

NUMPY_BYTES = """
import sys, numpy as np
np.fromfile(sys.argv[1], dtype=np.uint8).astype(np.uint16).tofile(sys.argv[2])
"""

HF_BPE = """
import sys, numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
path, out, vocab = sys.argv[1], sys.argv[2], int(sys.argv[3])

def pieces():
    with open(path, encoding="utf-8") as f:
        while lines := f.readlines(1 << 20):
            yield "".join(lines)

bpe = Tokenizer(models.BPE())
bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
bpe.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(vocab_size=vocab, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
bpe.train_from_iterator(pieces(), trainer=trainer)
with open(out, "wb") as f:
    batch = []
    for piece in pieces():
        batch.append(piece)
        if len(batch) == 16:
            for e in bpe.encode_batch(batch):
                np.asarray(e.ids, dtype=np.uint16).tofile(f)
            batch = []
    for e in bpe.encode_batch(batch):
        np.asarray(e.ids, dtype=np.uint16).tofile(f)
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modality", choices=sorted(UNITS))
    parser.add_argument("source", type=Path, help="a text file, or a folder of audio or MIDI files")
    parser.add_argument("--sizes", required=True, help="comma-separated corpus sizes: MB of text, hours of audio, or MIDI files")
    parser.add_argument("--tokenizer", default="bytes", help="text: bytes, chars or bpe (default bytes)")
    parser.add_argument("--vocab-size", type=int, default=4096, help="text BPE vocabulary (default 4096)")
    parser.add_argument("--workers", type=int, default=0, help="wgpt prepare --workers (default 0: all cores)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the fastest of each run counts")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder for corpora and outputs (default: a temporary one)")
    parser.add_argument("--json", type=Path, default=None, help="write every run's figures here")
    return parser.parse_args()


# -- corpora -------------------------------------------------------------------------------------
def text_corpus(source: Path, megabytes: float, folder: Path) -> Path:
    """``source`` repeated into one file of about ``megabytes`` MB (whole copies, then a partial one)."""
    target, data = int(megabytes * 1e6), source.read_bytes()
    path = folder / f"text-{megabytes:g}MB.txt"
    with open(path, "wb") as f:
        while f.tell() + len(data) <= target:
            f.write(data)
        rest = data[: target - f.tell()]
        f.write(rest[: rest.rfind(b"\n") + 1])  # end on a whole line
    return path


def copied_corpus(files: list[tuple[Path, float]], amount: float, folder: Path) -> Path:
    """Copies of ``files`` (each ``(path, size)``), cycled until their sizes add up to ``amount``."""
    corpus, total, i = folder, 0.0, 0
    corpus.mkdir(parents=True, exist_ok=True)
    while total < amount:
        path, size = files[i % len(files)]
        shutil.copyfile(path, corpus / f"{i:06d}-{path.name}")
        total, i = total + size, i + 1
    return corpus


def build(modality: str, source: Path, size: float, work: Path) -> Path:
    if modality == "text":
        return text_corpus(source, size, work)
    suffixes = {"audio": (".wav", ".flac", ".ogg", ".mp3", ".aiff"), "midi": (".mid", ".midi")}[modality]
    files = sorted(p for p in source.rglob("*") if p.suffix.lower() in suffixes)
    if not files:
        raise SystemExit(f"no {modality} files under {source}")
    if modality == "audio":
        import soundfile as sf

        sized = [(p, sf.info(str(p)).duration / 3600) for p in files]
    else:
        sized = [(p, 1.0) for p in files]
    return copied_corpus(sized, size, work / f"{modality}-{size:g}{UNITS[modality]}")


# -- runs ----------------------------------------------------------------------------------------
def timed(command: list[str]) -> dict[str, float]:
    """Wall seconds and peak resident memory (GB, largest process) of one command, by /usr/bin/time -v.
    Written data is flushed first, so that no run pays for the previous run's writes."""
    os.sync()
    done = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", done.stderr).group(1)
    seconds = sum(float(part) * 60**i for i, part in enumerate(reversed(wall.split(":"))))
    return {"seconds": seconds, "peak_rss_gb": rss / 1e6}


def wgpt_command(args: argparse.Namespace, corpus: Path, out: Path) -> list[str]:
    command = [sys.executable, "-m", "wgpt", "prepare", args.modality, str(corpus), "-o", str(out), "-q", "--workers", str(args.workers)]
    if args.modality == "text":
        command += ["--tokenizer", args.tokenizer, "--vocab-size", str(args.vocab_size)]
    return command


def reference_command(args: argparse.Namespace, corpus: Path, out: Path) -> list[str] | None:
    if args.modality != "text" or args.tokenizer not in ("bytes", "bpe"):
        return None
    if args.tokenizer == "bytes":
        return [sys.executable, "-c", NUMPY_BYTES, str(corpus), str(out / "ref.bin")]
    return [sys.executable, "-c", HF_BPE, str(corpus), str(out / "ref.bin"), str(args.vocab_size)]


def input_size(corpus: Path) -> int:
    return corpus.stat().st_size if corpus.is_file() else sum(p.stat().st_size for p in corpus.iterdir())


def main() -> None:
    args = parse_args()
    sizes = [float(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(dir=args.work) as scratch:
        work = Path(scratch)
        corpora = {size: build(args.modality, args.source, size, work) for size in sizes}
        runs: list[dict] = []
        for round_ in range(args.rounds):
            for size, corpus in corpora.items():
                for who, command in (("wgpt", wgpt_command), ("reference", reference_command)):
                    out = work / f"out-{who}-{size:g}"
                    out.mkdir(exist_ok=True)
                    cmd = command(args, corpus, out)
                    if cmd is not None:
                        runs.append({"round": round_, "size": size, "who": who, "input_bytes": input_size(corpus), **timed(cmd)})
                        print(
                            f"round {round_} {size:g} {UNITS[args.modality]} {who}: {runs[-1]['seconds']:.1f} s, {runs[-1]['peak_rss_gb']:.2f} GB",
                            flush=True,
                        )
    table = summary(runs, args, sizes)
    print("\n" + "\n".join(table))
    if args.json:
        meta = {"command": " ".join(sys.argv), "cores": os.cpu_count(), "machine": platform.processor() or platform.machine()}
        args.json.write_text(
            json.dumps({**meta, "modality": args.modality, "tokenizer": args.tokenizer, "runs": runs, "table": table}, indent=2) + "\n"
        )


def summary(runs: list[dict], args: argparse.Namespace, sizes: list[float]) -> list[str]:
    """Markdown rows: per size, the fastest wgpt and reference runs and the largest peak memory."""
    unit = UNITS[args.modality]
    rows = [
        f"| {unit} | input MB | wgpt s | wgpt MB/s | wgpt peak GB | reference s | reference peak GB | time vs reference |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        mine = [r for r in runs if r["size"] == size and r["who"] == "wgpt"]
        ref = [r for r in runs if r["size"] == size and r["who"] == "reference"]
        fast, mb = min(r["seconds"] for r in mine), mine[0]["input_bytes"] / 1e6
        cells = [f"{size:g}", f"{mb:,.1f}", f"{fast:.1f}", f"{mb / fast:.1f}", f"{max(r['peak_rss_gb'] for r in mine):.2f}"]
        if ref:
            ref_fast = min(r["seconds"] for r in ref)
            cells += [f"{ref_fast:.1f}", f"{max(r['peak_rss_gb'] for r in ref):.2f}", f"{fast / ref_fast:.2f}x"]
        else:
            cells += ["-", "-", "-"]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


if __name__ == "__main__":
    main()
