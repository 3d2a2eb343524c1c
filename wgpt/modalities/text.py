"""Text as UTF-8 bytes (lossless, 256 ids), as characters (vocabulary from the corpus, as the
paper's text8 runs), or as byte-level BPE trained on the corpus with Hugging Face ``tokenizers``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from wgpt.errors import WgptError
from wgpt.io import write_atomic
from wgpt.modalities.base import Modality, SkipFile

TOKENIZERS = ("bytes", "chars", "bpe")


def bundled_corpus() -> Path:
    """Milton's Paradise Lost and Paradise Regained (public domain), shipped for first runs."""
    from importlib import resources

    return Path(str(resources.files("wgpt") / "data" / "milton.txt"))


UNKNOWN_CHAR = "\ufffd"  # id 0 of the chars vocabulary: characters never seen in training


class TextModality(Modality):
    name: ClassVar[str] = "text"
    extensions: ClassVar[tuple[str, ...]] = (".txt", ".text", ".md", ".rst")
    output_extensions: ClassVar[tuple[str, ...]] = (".txt", ".md")
    unit: ClassVar[str] = "byte"

    def __init__(self, tokenizer: str = "bytes", vocab_size: int = 4096, chars: str | None = None, bpe_json: str | None = None) -> None:
        if tokenizer not in TOKENIZERS:
            raise WgptError(f"unknown text tokenizer {tokenizer!r}: choose one of {', '.join(TOKENIZERS)}")
        if tokenizer == "bpe" and not 257 <= vocab_size <= 2**20:
            raise WgptError(f"--vocab-size must be between 257 and {2**20} for bpe, got {vocab_size}")
        self.tokenizer = tokenizer
        self.requested_vocab = vocab_size
        self.chars = chars  # chars: the vocabulary, one character per id
        self._bpe = None
        if bpe_json is not None:
            from tokenizers import Tokenizer

            self._bpe = Tokenizer.from_str(bpe_json)

    # -- vocabulary -------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        if self.tokenizer == "bytes":
            return 256
        if self.tokenizer == "chars":
            return len(self._require_fitted(self.chars))
        return self._require_fitted(self._bpe).get_vocab_size()

    def _require_fitted(self, value: Any) -> Any:
        if value is None:
            raise RuntimeError(f"the {self.tokenizer} tokenizer has not been fitted")
        return value

    def fit(self, payloads: list[str]) -> None:
        if self.tokenizer == "chars":
            seen = set().union(*(set(p) for p in payloads)) - {UNKNOWN_CHAR}
            self.chars = UNKNOWN_CHAR + "".join(sorted(seen))
        elif self.tokenizer == "bpe":
            from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

            bpe = Tokenizer(models.BPE())
            bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            bpe.decoder = decoders.ByteLevel()
            trainer = trainers.BpeTrainer(
                vocab_size=self.requested_vocab,
                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                show_progress=False,
            )
            bpe.train_from_iterator(payloads, trainer=trainer)
            self._bpe = bpe

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"name": self.name, "tokenizer": self.tokenizer}
        if self.tokenizer == "chars":
            spec["chars"] = self._require_fitted(self.chars)
        elif self.tokenizer == "bpe":
            spec["bpe_json"] = self._require_fitted(self._bpe).to_str()
        return spec

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> TextModality:
        return cls(spec["tokenizer"], chars=spec.get("chars"), bpe_json=spec.get("bpe_json"))

    # -- files to ids ---------------------------------------------------------------------
    def load(self, path: Path) -> str:
        data = path.read_bytes()
        if not data:
            raise SkipFile("empty file")
        if b"\x00" in data[:65536]:
            raise SkipFile("binary data (NUL bytes), not text")
        try:
            return data.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError as err:
            raise SkipFile(f"not UTF-8 (invalid byte at offset {err.start}); convert it, e.g. iconv -f latin1 -t utf-8") from None

    def tokenize(self, payload: str) -> tuple[np.ndarray, dict[str, int]]:
        raw = payload.encode("utf-8")
        units = {"byte": len(raw), "char": len(payload)}
        if self.tokenizer == "bytes":
            return np.frombuffer(raw, dtype=np.uint8).astype(np.int64), units
        if self.tokenizer == "chars":
            vocab = np.frombuffer(self._require_fitted(self.chars).encode("utf-32-le"), dtype=np.uint32)
            order = np.argsort(vocab)
            points = np.frombuffer(payload.encode("utf-32-le"), dtype=np.uint32)
            pos = np.searchsorted(vocab[order], points).clip(max=len(vocab) - 1)
            ids = np.where(vocab[order][pos] == points, order[pos], 0)  # unseen characters -> id 0
            return ids.astype(np.int64), units
        ids = self._require_fitted(self._bpe).encode(payload).ids
        return np.asarray(ids, dtype=np.int64), units

    def split_payload(self, payload: str, fraction: float) -> tuple[str, str] | None:
        cut = int(len(payload) * (1.0 - fraction))
        newline = payload.find("\n", cut)
        cut = newline + 1 if 0 <= newline < len(payload) - 1 else cut
        if cut <= 0 or cut >= len(payload):
            return None
        return payload[:cut], payload[cut:]

    # -- ids to files ---------------------------------------------------------------------
    def decode(self, ids: list[int]) -> str:
        if self.tokenizer == "bytes":
            return bytes(ids).decode("utf-8", errors="replace")
        if self.tokenizer == "chars":
            chars = self._require_fitted(self.chars)
            return "".join(chars[i] for i in ids)
        return self._require_fitted(self._bpe).decode(ids)

    def encode_prompt(self, text: str | None, path: Path | None) -> list[int]:
        if path is not None:
            try:
                text = self.load(path)
            except SkipFile as err:
                raise WgptError(f"prompt file {path}: {err}") from None
        return self.tokenize(text or "")[0].tolist()

    def next_token_rule(self) -> Callable[[list[int], int], np.ndarray] | None:
        """Bytes tokenizer: the bytes that keep the output valid UTF-8 of exactly the asked length.

        A continuation byte only where a character is open, a lead byte only where its whole
        character fits in the ``remaining`` tokens. Other tokenizers decode to text by design.
        """
        return _utf8_next if self.tokenizer == "bytes" else None

    def start_ids(self) -> list[int]:
        return self.tokenize("\n")[0].tolist()  # a fresh line, as after a blank line in the corpus

    def write(self, ids: list[int], path: Path) -> None:
        write_atomic(path, self.decode(ids).encode("utf-8"))


def _open_character(tail: bytes) -> tuple[int, int]:
    """(continuation bytes still needed, lead byte) of the character ``tail`` ends inside, or (0, 0)."""
    for back in range(1, min(3, len(tail)) + 1):
        byte = tail[-back]
        if byte < 0x80:
            return 0, 0
        if byte >= 0xC0:  # a lead byte: how long is its character?
            length = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return max(0, length - back), byte
    return 0, 0


def _utf8_next(ids: list[int], remaining: int) -> np.ndarray:
    return utf8_allowed(bytes(ids[-3:]), remaining)


def utf8_allowed(tail: bytes, remaining: int) -> np.ndarray:
    """Boolean mask over the 256 byte values that may follow ``tail`` in valid UTF-8 (read-only, shared)."""
    need, lead = _open_character(tail)
    return _utf8_mask(need, lead if need and tail[-1] == lead else 0, min(remaining, 4))


@functools.cache
def _utf8_mask(need: int, after_lead: int, remaining: int) -> np.ndarray:
    """The mask for a state: continuation bytes still ``need``ed, the lead byte just written (or 0), ``remaining`` (at most 4)."""
    allowed = np.zeros(256, dtype=bool)
    if need:
        # the byte right after the lead has narrower ranges (RFC 3629)
        low, high = {0xE0: (0xA0, 0xBF), 0xED: (0x80, 0x9F), 0xF0: (0x90, 0xBF), 0xF4: (0x80, 0x8F)}.get(after_lead, (0x80, 0xBF))
        allowed[low : high + 1] = True
    else:
        allowed[:0x80] = True
        for first, last, extra in ((0xC2, 0xDF, 1), (0xE0, 0xEF, 2), (0xF0, 0xF4, 3)):
            if remaining >= 1 + extra:
                allowed[first : last + 1] = True
    allowed.flags.writeable = False  # one array per state, shared by every caller
    return allowed
