"""Text as UTF-8 bytes (lossless, 256 ids), as characters (vocabulary from the corpus, as the
paper's text8 runs), or as byte-level BPE trained on the corpus (``wgpt.modalities.bpe``).

A file is read in pieces of ``piece_extent`` bytes, cut where a line ends (or, failing that,
before a space): the GPT-2 split that byte-level BPE applies never joins a visible character to
the whitespace after it, so every piece tokenizes exactly as it would inside the whole file and
the shards do not depend on how the text is cut, into pieces or into files.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from wgpt.errors import WgptError
from wgpt.io import write_atomic
from wgpt.modalities import bpe as bpe_lib
from wgpt.modalities.base import Modality, Piece, SkipFile

TOKENIZERS = ("bytes", "chars", "bpe")
PIECE_BYTES = 4 << 20  # 4 MiB a piece: tens of MB in flight per worker, few enough tasks for a 40 GB corpus
HEAD_BYTES = 65536  # a NUL byte here marks a binary file
BPE_TRAIN_BYTES = 100_000_000  # what the BPE trainer sees by default: minutes on a laptop, well under a GB of memory
_BOM = b"\xef\xbb\xbf"
# Cut points, best first: after a line break between two visible ASCII characters (a piece then
# starts a line), else between a visible ASCII character and the whitespace after it.
_LINE_CUT = re.compile(rb"[!-~]\n(?=[!-~])")
_SPACE_CUT = re.compile(rb"[!-~](?=[ \t\r\n])")
_CUT_WINDOWS = (1 << 12, 1 << 16)  # bytes searched for a cut: a short look first, then a longer one


def bundled_corpus() -> Path:
    """Milton's Paradise Lost and Paradise Regained (public domain), shipped for first runs."""
    from importlib import resources

    return Path(str(resources.files("wgpt") / "data" / "milton.txt"))


UNKNOWN_CHAR = "\ufffd"  # id 0 of the chars vocabulary: characters never seen in training


TOKENIZER_FILE = "tokenizer.json"


def chars_tokenizer(chars: str) -> Any:
    """A ``tokenizers.Tokenizer`` giving the ids of the chars vocabulary ``chars``: every character
    split off on its own, looked up in the table, unseen ones to id 0 (``UNKNOWN_CHAR``)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({c: i for i, c in enumerate(chars)}, unk_token=chars[0]))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"(?m:.)"), behavior="isolated")  # Oniguruma's (?m): . matches line breaks too
    tok.decoder = decoders.Fuse()  # characters joined as they are, without spaces between them
    return tok


class TextModality(Modality):
    name: ClassVar[str] = "text"
    extensions: ClassVar[tuple[str, ...]] = (".txt", ".text", ".md", ".rst")
    output_extensions: ClassVar[tuple[str, ...]] = (".txt", ".md")
    piece_extent: ClassVar[int | None] = PIECE_BYTES
    prints_as_text: ClassVar[bool] = True

    def __init__(
        self,
        tokenizer: str = "bytes",
        vocab_size: int = 4096,
        chars: str | None = None,
        bpe_json: str | None = None,
        encoder: str = "tokenizers",
        bpe_train_bytes: int = BPE_TRAIN_BYTES,
    ) -> None:
        if tokenizer not in TOKENIZERS:
            raise WgptError(f"unknown text tokenizer {tokenizer!r}: choose one of {', '.join(TOKENIZERS)}")
        if tokenizer == "bpe" and not 257 <= vocab_size <= 2**20:
            raise WgptError(f"--vocab-size must be between 257 and {2**20} for bpe, got {vocab_size}")
        if bpe_train_bytes < 1:
            raise WgptError(f"--bpe-train-bytes must be at least 1, got {bpe_train_bytes}")
        if encoder not in bpe_lib.ENCODERS:
            raise WgptError(f"unknown BPE encoder {encoder!r} in the text spec: choose one of {', '.join(bpe_lib.ENCODERS)}")
        if chars is not None and not (isinstance(chars, str) and chars and len(set(chars)) == len(chars)):
            raise WgptError("the recorded character table is damaged (empty, or a character twice): prepare the data again")
        self.tokenizer = tokenizer
        self.requested_vocab = vocab_size
        self.chars = chars  # chars: the vocabulary, one character per id
        self.encoder = encoder  # bpe: which library applies the merges (see wgpt.modalities.bpe)
        self.fit_bytes = bpe_train_bytes if tokenizer == "bpe" else None  # chars: every character of the training split
        self._bpe = None
        if bpe_json is not None:
            from tokenizers import Tokenizer

            self._bpe = Tokenizer.from_str(bpe_json)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_fast", None)  # tiktoken's encoder is rebuilt where it is needed
        return state

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

    @property
    def needs_fit(self) -> bool:
        return self.tokenizer != "bytes"

    def fit_sample(self, piece: Piece) -> str:
        text = self._read(piece)[1]
        return "".join(sorted(set(text))) if self.tokenizer == "chars" else text

    def fit(self, samples: Iterable[str], count: int = 0) -> None:
        """Characters: every one the samples hold. BPE: merges learned from the samples, streamed."""
        if self.tokenizer == "chars":
            seen = set().union(*(set(s) for s in samples)) - {UNKNOWN_CHAR}
            self.chars = UNKNOWN_CHAR + "".join(sorted(seen))
        elif self.tokenizer == "bpe":
            probe: list[str] = []
            self._bpe = bpe_lib.train(bpe_lib.keep_probe(samples, probe), self.requested_vocab)
            self.encoder = bpe_lib.choose_encoder(self._bpe, probe[0] if probe else "")
            self.__dict__.pop("_fast", None)

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"name": self.name, "tokenizer": self.tokenizer}
        if self.tokenizer == "chars":
            spec["chars"] = self._require_fitted(self.chars)
        elif self.tokenizer == "bpe":
            spec["bpe_json"] = self._require_fitted(self._bpe).to_str()
            spec["encoder"] = self.encoder
        return spec

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> TextModality:
        needs = {"chars": "chars", "bpe": "bpe_json"}.get(spec["tokenizer"])
        if needs and not isinstance(spec.get(needs), str):
            raise WgptError(f"the recorded {spec['tokenizer']} tokenizer is damaged (no {needs}): prepare the data again")
        return cls(spec["tokenizer"], chars=spec.get("chars"), bpe_json=spec.get("bpe_json"), encoder=spec.get("encoder", "tokenizers"))

    def tokenizer_files(self) -> dict[str, str]:
        """``tokenizer.json`` for Hugging Face ``tokenizers`` (``Tokenizer.from_file``): the BPE itself,
        or a character table that gives the same ids; bytes need none."""
        if self.tokenizer == "bpe":
            return {TOKENIZER_FILE: self._require_fitted(self._bpe).to_str()}
        if self.tokenizer == "chars":
            return {TOKENIZER_FILE: chars_tokenizer(self._require_fitted(self.chars)).to_str()}
        return {}

    def describe_ids(self) -> str:
        if self.tokenizer == "bytes":
            return "ids 0-255 are the UTF-8 bytes of the text; no tokenizer is needed"
        if self.tokenizer == "chars":
            return (
                f"one id per character, {self.vocab_size} characters; id 0 ({UNKNOWN_CHAR}) stands for characters unseen in training; "
                f"{TOKENIZER_FILE} gives the same ids with Hugging Face tokenizers"
            )
        return f"byte-level BPE, {self.vocab_size} tokens; {TOKENIZER_FILE} gives the same ids with Hugging Face tokenizers"

    # -- files to ids ---------------------------------------------------------------------
    def plan(self, path: Path) -> tuple[int, int]:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
        if b"\x00" in head:
            raise SkipFile("binary data (NUL bytes), not text")
        start = len(_BOM) if head.startswith(_BOM) else 0
        if size <= start:
            raise SkipFile("empty file")
        return start, size

    def boundary(self, path: Path, position: int) -> int:
        """A cut at or after ``position``: after a line break, else before whitespace, else (64 KB
        without either) the next UTF-8 character, where BPE may then tokenize differently."""
        with open(path, "rb") as f:
            for window in _CUT_WINDOWS:
                low = max(0, position - 2)
                f.seek(low)
                data = f.read(window)
                if len(data) < 3:
                    return low + len(data)
                for pattern, end_offset in ((_LINE_CUT, 0), (_SPACE_CUT, 1)):
                    match = pattern.search(data, max(0, position - low - 2 + end_offset))
                    if match:
                        return low + match.end()
                if len(data) < window:  # the end of the file came first: no cut
                    return low + len(data)
            f.seek(position)
            tail = f.read(4)
        lead = next((i for i, b in enumerate(tail) if b & 0xC0 != 0x80), len(tail))
        return position + lead

    def scan(self, piece: Piece) -> None:
        self._read(piece)  # valid UTF-8, or SkipFile saying where it is not

    def _read(self, piece: Piece) -> tuple[bytes, str]:
        with open(piece.path, "rb") as f:
            f.seek(piece.start)
            raw = f.read(piece.stop - piece.start)
        try:
            return raw, raw.decode("utf-8")
        except UnicodeDecodeError as err:
            where = piece.start + err.start
            raise SkipFile(f"not UTF-8 (invalid byte at offset {where}); convert it, e.g. iconv -f latin1 -t utf-8") from None

    def encode(self, piece: Piece, facts: Any = None) -> tuple[np.ndarray, dict[str, int]]:
        raw, text = self._read(piece)
        return self._ids(text, raw), {"byte": len(raw), "char": len(text)}

    def tokenize(self, text: str) -> tuple[np.ndarray, dict[str, int]]:
        """Ids of a string, as preparation gives them, and its unit counts."""
        raw = text.encode("utf-8")
        return self._ids(text, raw), {"byte": len(raw), "char": len(text)}

    def _ids(self, text: str, raw: bytes) -> np.ndarray:
        if self.tokenizer == "bytes":
            return np.frombuffer(raw, dtype=np.uint8)
        if self.tokenizer == "chars":
            vocab = np.frombuffer(self._require_fitted(self.chars).encode("utf-32-le"), dtype=np.uint32)
            order = np.argsort(vocab).astype(np.uint32)
            points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
            pos = np.searchsorted(vocab[order], points).clip(max=len(vocab) - 1)
            return np.where(vocab[order][pos] == points, order[pos], np.uint32(0))  # unseen characters -> id 0
        return np.asarray(self._bpe_ids(text), dtype=np.uint32)

    def _bpe_ids(self, text: str) -> list[int]:
        """tiktoken where the spec chose it and it is installed, else tokenizers: they agree on this BPE."""
        if self.encoder == "tiktoken" and "_fast" not in self.__dict__:
            try:
                self._fast = bpe_lib.tiktoken_encoding(self._require_fitted(self._bpe))
            except ImportError:
                self._fast = None
        fast = self.__dict__.get("_fast")
        return fast.encode_ordinary(text) if fast is not None else self._require_fitted(self._bpe).encode(text).ids

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
            return self.encode_file(path)
        try:
            (text or "").encode("utf-8")
        except UnicodeEncodeError as err:  # argv bytes that are not UTF-8 arrive as lone surrogates
            raise WgptError(
                f"--prompt is not valid UTF-8 (character {err.start + 1} cannot be encoded): set a UTF-8 locale, or put the prompt in a file and pass --prompt-file"
            ) from None
        return self.tokenize(text or "")[0].tolist()

    def next_token_rule(self, length_unit: str | None = None) -> Callable[[list[int], int], np.ndarray] | None:
        """Bytes tokenizer: the bytes that keep the output valid UTF-8 of exactly the asked length.

        A continuation byte only where a character is open, a lead byte only where its whole
        character fits in the ``remaining`` tokens. Other tokenizers decode to text by design.
        """
        return _utf8_next if self.tokenizer == "bytes" else None

    def start_ids(self) -> list[int]:
        return self.tokenize("\n")[0].tolist()  # a fresh line, as after a blank line in the corpus

    def write(self, ids: list[int], path: Path) -> list[Path]:
        write_atomic(path, self.decode(ids).encode("utf-8"))
        return [path]


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
