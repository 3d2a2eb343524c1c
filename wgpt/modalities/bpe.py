"""Byte-level BPE for text: learned by Hugging Face ``tokenizers``, applied by ``tiktoken``.

``tokenizers`` trains the merges on a stream of pieces (its counting runs on every core) and
holds the model that checkpoints carry as JSON. Encoding a corpus is where the time goes, and
there ``tiktoken`` applies the same byte-level merges about five times faster per core (measured
on Shakespeare: 3.2 MB/s against 0.6 MB/s on one core). The two agree token for token when the
merge ranks are the vocabulary ids, which holds for a vocabulary ``tokenizers`` trained (merges
get ids in the order they are learned), and they split text into words with the same GPT-2
pattern. ``fit`` checks that they agree on a probe of the training text and keeps ``tokenizers``
as the encoder where they do not; the choice is part of the modality spec, so prompts are always
encoded as the shards were.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from typing import Any

# The GPT-2 split that ``pre_tokenizers.ByteLevel(use_regex=True)`` applies before merging.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
PROBE_CHARS = 1 << 18  # this much of the first training piece checks that tiktoken encodes as tokenizers does
ENCODERS = ("tiktoken", "tokenizers")
TRAIN_CHUNK = 1 << 18  # characters per string handed to the trainer, which buffers 256 strings at a time
_WORD_END = re.compile(r"[!-~](?=[ \t\r\n])")  # a visible character before whitespace: always a word boundary


def train(texts: Iterable[str], vocab_size: int) -> Any:
    """A byte-level BPE ``tokenizers.Tokenizer`` learned from ``texts``, streamed."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator((c for text in texts for c in _chunks(text)), trainer=trainer)
    return bpe


def _chunks(text: str) -> Iterator[str]:
    """``text`` in strings of about ``TRAIN_CHUNK`` characters, cut only where GPT-2's split cuts
    anyway, so the word counts, and hence the merges, are those of the uncut text."""
    start = 0
    while len(text) - start > TRAIN_CHUNK:
        match = _WORD_END.search(text, start + TRAIN_CHUNK)
        if match is None:
            break
        yield text[start : match.end()]
        start = match.end()
    yield text[start:]


def keep_probe(texts: Iterable[str], probe: list[str]) -> Iterator[str]:
    """``texts`` unchanged, keeping the start of the first one in ``probe`` for ``choose_encoder``."""
    for text in texts:
        if not probe:
            probe.append(text[:PROBE_CHARS])
        yield text


@functools.cache
def _byte_of_char() -> dict[str, int]:
    """The inverse of the byte-level alphabet: GPT-2 shows every byte as a printable character."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[chr(byte)] = byte
        else:
            chars[chr(256 + extra)] = byte
            extra += 1
    return chars


def tiktoken_encoding(bpe: Any) -> Any:
    """The ``tiktoken.Encoding`` of a trained byte-level BPE: ranks are its vocabulary ids."""
    import tiktoken

    byte_of = _byte_of_char()
    ranks = {bytes(byte_of[c] for c in token): i for token, i in bpe.get_vocab().items()}
    return tiktoken.Encoding("wgpt-bpe", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={})


def choose_encoder(bpe: Any, probe: str) -> str:
    """tiktoken where it is installed and encodes ``probe`` exactly as ``tokenizers`` does."""
    try:
        fast = tiktoken_encoding(bpe)
    except ImportError:
        return "tokenizers"
    return "tiktoken" if fast.encode_ordinary(probe) == bpe.encode(probe).ids else "tokenizers"
