"""Symbolic music as one stream of MidiTok tokens (REMI by default), optionally compressed by BPE.

Every track of a file goes into one sequence, each note carrying its program (``use_programs``),
so multi-track pieces keep their instruments. Files are tokenized whole, each in a worker process:
``encode`` parses and base-tokenizes (``load``), then applies BPE when it has been learned
(``tokenize``); ``fit`` learns BPE from the training split only, from at most ``fit_bytes`` of
MIDI files spread over it. Decoding must survive the junk an untrained model emits: the
tokenizers decode any id sequence, and what still fails is cut back to its longest decodable prefix.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from wgpt.errors import WgptError
from wgpt.io import write_atomic, write_wav
from wgpt.modalities.base import Modality, Piece, SkipFile

# Tokenizers that emit one id per step; CPWord, Octuple and MuMIDI emit a tuple per step.
TOKENIZERS = ("REMI", "TSD", "MIDILike", "Structured", "BEAT")
MULTI_STREAM = ("CPWord", "Octuple", "MuMIDI", "MMM", "PerTok")
DEFAULT_PARAMS: dict[str, Any] = {
    "use_programs": True,  # one stream for all tracks, each note tagged with its instrument
    "use_tempos": True,  # generated music plays at the data's tempo, not always 120 qpm
    "tempo_range": (40, 250),
    "num_tempos": 43,  # a 5 qpm grid, so common tempos (80, 100, 120 qpm) are exact
}
BOS, EOS = "BOS_None", "EOS_None"
BPE_TRAIN_BYTES = 100_000_000  # MIDI bytes BPE learns from by default: tens of thousands of files
SAMPLE_RATE = 22050  # rendering rate of `--out song.wav`: enough for sine or soundfont previews
RENDER_LIMIT_S = 600.0  # at most 10 minutes rendered (53 MB of samples): notes hours apart must not ask for gigabytes
_VERSION_KEYS = ("miditok_version", "symusic_version", "hf_tokenizers_version")


@dataclass(frozen=True)
class MidiPayload:
    """One parsed file, small enough to send back from a worker process cheaply."""

    ids: np.ndarray  # base token ids (before BPE), int32
    cuts: np.ndarray  # end index of each bar/beat chunk; BPE never merges across chunks
    notes: int  # notes in the token stream: the unit evaluation reports bits per
    seconds: float  # duration, for bits per second


class MidiModality(Modality):
    name: ClassVar[str] = "midi"
    extensions: ClassVar[tuple[str, ...]] = (".mid", ".midi")
    output_extensions: ClassVar[tuple[str, ...]] = (".mid", ".midi", ".wav")
    length_units: ClassVar[dict[str, int]] = {"second": 200, "bar": 400}  # folk tunes in REMI: ~22 tokens a second

    def __init__(
        self,
        tokenizer: str = "REMI",
        vocab_size: int | None = None,
        tokenizer_params: dict[str, Any] | None = None,
        soundfont: str | None = None,
        bpe_train_bytes: int = BPE_TRAIN_BYTES,
    ) -> None:
        tok = _build_tokenizer(tokenizer, {**DEFAULT_PARAMS, **(tokenizer_params or {})})
        if vocab_size is not None and vocab_size <= len(tok):
            raise WgptError(f"--vocab-size must exceed the {len(tok)} base tokens of {tokenizer}, got {vocab_size}")
        self._adopt(tok, tokenizer, vocab_size, soundfont, bpe_train_bytes)

    def _adopt(
        self, tok: Any, tokenizer: str, vocab_size: int | None, soundfont: str | None, bpe_train_bytes: int = BPE_TRAIN_BYTES
    ) -> None:
        """Shared by ``__init__`` and ``from_spec``, which brings an already trained tokenizer."""
        if bpe_train_bytes < 1:
            raise WgptError(f"--bpe-train-bytes must be at least 1, got {bpe_train_bytes}")
        self._tok = tok
        self.fit_bytes = bpe_train_bytes  # MIDI bytes of training files that BPE learns from
        self.tokenizer = tokenizer
        self.requested_vocab = vocab_size  # None: nothing to learn in fit()
        self.soundfont = soundfont  # set by `wgpt sample` for .wav; None renders sine waves
        self.separator = _special_id(tok, BOS)

    # -- vocabulary -------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self._tok)

    @property
    def needs_fit(self) -> bool:
        return self.requested_vocab is not None  # BPE to learn

    def fit_sample(self, piece: Piece) -> list[str]:
        return self._chunk_bytes(self.load(piece.path))

    def fit(self, samples: Iterable[list[str]], count: int) -> None:
        """Learn BPE merges from ``count`` training files' chunk strings (``fit_sample``), streamed."""
        if self.requested_vocab is not None:
            self._tok.train(vocab_size=self.requested_vocab, model="BPE", iterator=_Sized(samples, count))

    def spec(self) -> dict[str, Any]:
        """The tokenizer in MidiTok's own saved form (config plus learned merges), as pure JSON."""
        return {"name": self.name, "tokenizer": self.tokenizer, "miditok": _json_data(self._tok.to_dict())}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> MidiModality:
        modality = cls.__new__(cls)
        modality._adopt(_tokenizer_from_dict(spec["miditok"]), spec["tokenizer"], None, None)  # merges included
        return modality

    def tokenizer_files(self) -> dict[str, str]:
        """``tokenizer.json`` in MidiTok's own saved form (``MusicTokenizer.save``), which
        ``miditok.REMI(params=path)`` (or the tokenizer's class) loads."""
        return {"tokenizer.json": json.dumps(self._tok.to_dict(), indent=4)}

    def describe_ids(self) -> str:
        bpe = f", compressed by BPE to {self.vocab_size} tokens" if self._tok.is_trained else f", {self.vocab_size} tokens"
        return (
            f"MidiTok {self.tokenizer} tokens, every track in one stream{bpe}; "
            f"tokenizer.json loads with miditok.{self.tokenizer}(params='tokenizer.json')"
        )

    # -- files to ids ---------------------------------------------------------------------
    def plan(self, path: Path) -> tuple[int, int]:
        """The file's bytes, after a look at its header: MIDI files are tokenized whole."""
        start, stop = super().plan(path)
        with open(path, "rb") as f:
            _check_header(f.read(4))
        return start, stop

    def encode(self, piece: Piece, facts: Any = None) -> tuple[np.ndarray, dict[str, int]]:
        return self.tokenize(self.load(piece.path))

    def load(self, path: Path) -> MidiPayload:
        """Parse and base-tokenize one file; this is the costly step, so it runs in the workers."""
        score = _read_score(Path(path))
        seconds = float(score.to("second").end())
        score = self._tok.preprocess_score(score)
        if score.note_num() == 0:
            (low, high), (drum_low, drum_high) = self._tok.config.pitch_range, self._tok.config.drums_pitch_range
            raise SkipFile(f"no notes within the tokenizer's pitch range ({low}-{high}, drums {drum_low}-{drum_high})")
        seq = self._tok.encode(score, encode_ids=False, no_preprocess_score=True)
        cuts = np.cumsum([len(chunk) for chunk in self._chunks(seq)], dtype=np.int64)
        return MidiPayload(np.asarray(seq.ids, dtype=np.int32), cuts, int(score.note_num()), seconds)

    def _chunks(self, seq: Any) -> list[Any]:
        """Bars or beats as MidiTok cuts them before BPE, so merges match MidiTok's own encoding."""
        split = self._tok.config.encode_ids_split
        chunks = seq.split_per_bars() if split == "bar" else seq.split_per_beats() if split == "beat" else [seq]
        return [c for c in chunks if len(c)]

    def _chunk_bytes(self, payload: MidiPayload) -> list[str]:
        """The payload as the strings of unique characters MidiTok feeds to Hugging Face BPE."""
        chunks = np.split(payload.ids, payload.cuts[:-1])
        return [self._tok._ids_to_bytes(chunk.tolist(), as_one_str=True) for chunk in chunks]

    def tokenize(self, payload: MidiPayload) -> tuple[np.ndarray, dict[str, int]]:
        units = {"note": payload.notes, "second": round(payload.seconds)}  # the pipeline sums ints per file
        if not self._tok.is_trained:
            return payload.ids, units
        # as MusicTokenizer.encode_token_ids does, on the chunks cached by load (no re-parsing)
        ids = self._tok._model.encode(self._chunk_bytes(payload), is_pretokenized=True).ids
        return np.asarray(ids, dtype=np.int32), units

    def encode_prompt(self, text: str | None, path: Path | None) -> list[int]:
        """The separator, then the tokens of a MIDI file when one is given."""
        if text:
            raise WgptError("MIDI prompts come from a file: use --prompt-file song.mid")
        if path is None:
            return [self.separator]
        return [self.separator, *self.encode_file(path)]

    # -- ids to files ---------------------------------------------------------------------
    def _bounds(self) -> set[int]:
        """The ids that start or end a piece (BOS, EOS)."""
        return {self._tok.vocab[t] for t in (BOS, EOS) if t in self._tok.special_tokens}

    def pieces(self, ids: list[int]) -> list[list[int]]:
        """Split at BOS/EOS into pieces, dropping padding, masks and ids outside the vocabulary."""
        bounds = self._bounds()
        dropped = set(self._tok.special_tokens_ids) - bounds
        pieces: list[list[int]] = [[]]
        for i in ids:
            if i in bounds:
                pieces.append([])
            elif 0 <= i < len(self._tok) and i not in dropped:
                pieces[-1].append(int(i))
        return [p for p in pieces if p]

    def decode(self, ids: list[int]) -> Any:
        """The first piece in ``ids`` as a ``symusic.Score`` (empty when nothing decodes)."""
        pieces = self.pieces(ids)
        return self._decode_piece(pieces[0] if pieces else [])

    def _decode_piece(self, ids: list[int]) -> Any:
        """Decode, falling back to the longest prefix that decodes: a junk tail never loses a file."""
        score = self._try_decode(ids)
        good, bad = 0, len(ids)  # prefix lengths known to decode / to fail
        while score is None and bad - good > 1:
            mid = (good + bad) // 2
            good, bad = (mid, bad) if self._try_decode(ids[:mid]) is not None else (good, mid)
        if score is None:
            score = self._try_decode(ids[:good])
        return score if score is not None else _empty_score(self._tok)

    def _try_decode(self, ids: list[int]) -> Any:
        if not ids:
            return None
        try:
            return self._tok.decode(ids)
        except Exception:  # MidiTok raises many types on ill-formed sequences
            return None

    def next_token_rule(self, length_unit: str | None = None) -> Callable[[list[int], int], np.ndarray] | None:
        """With a length asked: no BOS, EOS or other special token, which would end the piece short of it."""
        if length_unit is None:
            return None
        mask = np.ones(self.vocab_size, dtype=bool)
        mask[list(self._tok.special_tokens_ids)] = False
        return lambda _ids, _remaining: mask

    def length(self, ids: list[int], unit: str) -> tuple[float, bool]:
        """How far the first piece has gone: the start of its last note, in seconds or as the bar
        it falls in (by the piece's time signatures; 0 without notes); and whether a BOS/EOS after
        it has ended it. Cutting by it keeps every note that starts within the length asked."""
        pieces, bounds = self.pieces(ids), self._bounds()
        ended = len(pieces) > 1 or (bool(pieces) and any(i in bounds for i in ids[ids.index(pieces[0][0]) :]))
        score = self._decode_piece(pieces[0] if pieces else []).to("second")
        onsets = [float(track.notes.numpy()["time"].max()) for track in score.tracks if len(track.notes)]
        if not onsets:
            return 0.0, ended
        if unit == "second":
            return max(onsets), ended
        if unit == "bar":
            return float((score.get_downbeats() <= max(onsets)).sum()), ended
        raise ValueError(f"unknown length unit {unit!r}")

    def write(self, ids: list[int], path: Path) -> list[Path]:
        """Write the first piece of ``ids`` as MIDI; for a ``.wav``, the MIDI beside it and its
        first ``RENDER_LIMIT_S`` seconds rendered to mono 16-bit audio."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in self.output_extensions:
            kinds = ", ".join(self.output_extensions)
            raise WgptError(f"cannot write MIDI as {suffix or 'a file without extension'}: use one of {kinds}")
        score = self.decode(ids)
        if suffix == ".wav":  # the notes first, kept whatever happens to the rendering
            write_atomic(path.with_suffix(".mid"), _midi_bytes(score))
            write_wav(path, (np.clip(self._render(score), -1.0, 1.0) * 32767).astype(np.int16), SAMPLE_RATE)
            return [path.with_suffix(".mid"), path]
        write_atomic(path, _midi_bytes(score))
        return [path]

    def waveform(self, ids: list[int]) -> tuple[np.ndarray, int]:
        """The first piece rendered as for a ``.wav`` (sine waves, or the soundfont when one is set)."""
        return self._render(self.decode(ids)), SAMPLE_RATE

    def use_soundfont(self, path: Path) -> None:
        """Render ``.wav`` output through FluidSynth and this SoundFont; checked now, before any generation."""
        if not path.is_file():
            raise WgptError(f"soundfont {path} not found: pass an existing .sf2 file")
        if importlib.util.find_spec("fluidsynth") is None:
            raise WgptError("rendering with a soundfont needs FluidSynth: pip install pyfluidsynth (and the fluidsynth library)")
        self.soundfont = str(path)

    def _render(self, score: Any) -> np.ndarray:
        """Audio in [-1, 1]: through FluidSynth when a soundfont is set, else pretty_midi's sines."""
        pm = _cut_at(_pretty(score), RENDER_LIMIT_S)
        if self.soundfont is None:
            return _normalise(pm.synthesize(fs=SAMPLE_RATE, normalize=False))
        if not Path(self.soundfont).is_file():
            raise WgptError(f"soundfont {self.soundfont} not found: pass an existing .sf2 file")
        try:
            return _normalise(pm.fluidsynth(fs=SAMPLE_RATE, sf2_path=str(self.soundfont), normalize=False))
        except ImportError:
            raise WgptError("rendering with a soundfont needs FluidSynth: pip install pyfluidsynth (and the fluidsynth library)") from None

    # -- evaluation -----------------------------------------------------------------------
    def statistics(self, sequences: list[list[int]]) -> dict[str, float | list[float]]:
        """Descriptive statistics of the decoded music, so generated and real music can be compared.

        Each sequence is split into pieces at BOS/EOS; scalars are means over pieces that have notes,
        ``pitch_class_histogram`` pools the pitched notes of all pieces (12 values summing to 1, or
        all 0 when nothing decodes to a note) and ``nonempty_fraction`` says how many pieces do.
        """
        pieces = [p for seq in sequences for p in self.pieces(list(seq))]
        described = [_describe(_pretty(self._decode_piece(p))) for p in pieces]
        with_notes = [d for d in described if d["notes"] > 0]
        stats: dict[str, float | list[float]] = {"nonempty_fraction": len(with_notes) / max(len(described), 1)}
        for key in ("notes_per_second", "pitch_range", "polyphony"):
            stats[key] = float(np.mean([d[key] for d in with_notes])) if with_notes else 0.0
        pitches = np.concatenate([d["pitches"] for d in with_notes] or [np.zeros(0)])
        stats["mean_pitch"] = float(pitches.mean()) if pitches.size else 0.0
        counts = np.bincount(pitches.astype(np.int64) % 12, minlength=12).astype(float)
        stats["pitch_class_histogram"] = (counts / max(counts.sum(), 1.0)).tolist()
        return stats


class _Sized:
    """An iterable with a length, which MidiTok's ``train`` asks for, over samples that stream in."""

    def __init__(self, items: Iterable[Any], count: int) -> None:
        self.items, self.count = items, count

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Any]:
        return iter(self.items)


# -- tokenizer construction --------------------------------------------------------------------
def _build_tokenizer(name: str, params: dict[str, Any]) -> Any:
    """A one-stream MidiTok tokenizer; refuses names and options that would give several streams."""
    import miditok

    if name not in TOKENIZERS:
        why = " (it emits several tokens per step)" if name in MULTI_STREAM else ""
        raise WgptError(f"MIDI tokenizer {name!r} is not supported{why}: choose one of {', '.join(TOKENIZERS)}")
    if not hasattr(miditok, name):  # BEAT is missing from older miditok 3.x releases
        raise WgptError(f"the MIDI tokenizer {name} needs a newer miditok: pip install -U miditok")
    if not params.get("use_programs") or not params.get("one_token_stream_for_programs", True):
        raise WgptError("MIDI tokenizer_params must keep use_programs and one_token_stream_for_programs True")
    try:
        tok = getattr(miditok, name)(miditok.TokenizerConfig(**params))
    except (TypeError, ValueError, KeyError) as err:
        raise WgptError(f"invalid MIDI tokenizer_params for {name}: {err}") from None
    _special_id(tok, BOS)
    return tok


def _special_id(tok: Any, token: str) -> int:
    if token not in tok.special_tokens:
        raise WgptError(f"the MIDI tokenizer needs the special token {token} (tokenizer_params special_tokens)")
    return int(tok.vocab[token])


def _tokenizer_from_dict(params: dict[str, Any]) -> Any:
    """Rebuild a tokenizer from ``MusicTokenizer.to_dict()`` output, in memory.

    MidiTok only loads its saved form from a file (``params=path``); checkpoints must load with
    no file beside them, so this does the same steps on the dict and then checks the result is
    the very tokenizer that was saved (a different MidiTok version could build another vocabulary).
    """
    import miditok

    if params.get("tokenization") not in TOKENIZERS:  # never an arbitrary attribute of miditok
        raise WgptError(
            f"the recorded MIDI tokenizer {params.get('tokenization')!r} is not one wgpt uses ({', '.join(TOKENIZERS)}): prepare the data again"
        )
    config = miditok.TokenizerConfig.from_dict(_config_from_json(params["config"]))
    tok = getattr(miditok, params["tokenization"])(config)
    if "_model" in params:
        from tokenizers import Tokenizer

        tok._model = Tokenizer.from_str(params["_model"])
        tok._vocab_base_byte_to_token = params["_vocab_base_byte_to_token"]
        tok._MusicTokenizer__create_vocab_learned_bytes_to_tokens()  # what MidiTok's loader calls
    if _comparable(tok.to_dict()) != _comparable(params):
        raise WgptError(
            f"the MIDI tokenizer in this spec (miditok {params.get('miditok_version')}) cannot be rebuilt exactly by "
            "the installed miditok: install the version the data was prepared with"
        )
    return tok


def _config_from_json(config: dict[str, Any]) -> dict[str, Any]:
    """Undo the JSON encoding of a TokenizerConfig dict (as ``MusicTokenizer._load_from_json`` does)."""
    config = copy.deepcopy(config)
    for key in ("beat_res", "beat_res_rest"):
        config[key] = {tuple(map(int, span.split("_"))): res for span, res in config[key].items()}
    config["time_signature_range"] = {int(k): v for k, v in config["time_signature_range"].items()}
    if "chord_maps" in config:
        config["chord_maps"] = {quality: tuple(notes) for quality, notes in config["chord_maps"].items()}
    return config


def _json_data(obj: Any) -> Any:
    """Plain JSON types only (tuples become lists), so a spec equals itself after a JSON trip."""
    return json.loads(json.dumps(obj))


def _comparable(params: dict[str, Any]) -> Any:
    return _json_data({k: v for k, v in params.items() if k not in _VERSION_KEYS})


# -- reading and writing files -----------------------------------------------------------------
def _read_score(path: Path) -> Any:
    """A ``symusic.Score`` with at least one note, or ``SkipFile`` saying why not."""
    from symusic import Score

    data = path.read_bytes()
    if not data:
        raise SkipFile("empty file")
    _check_header(data)
    try:
        score = Score.from_midi(data)
    except Exception as err:  # symusic reports parse failures as RuntimeError; any failure means corrupt
        raise SkipFile(f"truncated or corrupt: {_clean(err)}") from None
    if score.note_num() == 0:
        raise SkipFile("no notes")
    return score


def _check_header(data: bytes) -> None:
    if not data.startswith(b"MThd"):
        raise SkipFile("not a MIDI file (no MThd header)")


def _clean(err: Exception) -> str:
    """symusic's message without its parser prefix and stream suffix."""
    return str(err).removeprefix("MiniMidi: ").removesuffix(": iostream error").strip() or type(err).__name__


def _empty_score(tok: Any) -> Any:
    from symusic import Score

    return Score(int(tok.time_division))


def _midi_bytes(score: Any) -> bytes:
    """Standard MIDI file bytes, valid even for a score without tracks.

    symusic 0.6 writes the tempo and time-signature changes of a track-less score unsorted, which
    gives negative delta times (read back as ~2**28 ticks): an empty track makes it merge them.
    """
    if not len(score.tracks):
        from symusic import Track

        score = score.copy()
        score.tracks.append(Track())
    return score.dumps_midi()


def _pretty(score: Any) -> Any:
    """The score as a ``pretty_midi.PrettyMIDI`` (through MIDI bytes: no temporary file)."""
    import pretty_midi

    return pretty_midi.PrettyMIDI(io.BytesIO(_midi_bytes(score)))


def _cut_at(pm: Any, seconds: float) -> Any:
    """``pm`` without anything from ``seconds`` on (notes cut there), so that rendering it stays bounded."""
    if pm.get_end_time() <= seconds:
        return pm
    for inst in pm.instruments:
        inst.notes = [n for n in inst.notes if n.start < seconds]
        for note in inst.notes:
            note.end = min(note.end, seconds)
        inst.pitch_bends = [b for b in inst.pitch_bends if b.time < seconds]
        inst.control_changes = [c for c in inst.control_changes if c.time < seconds]
    for events in ("time_signature_changes", "key_signature_changes", "lyrics", "text_events"):
        setattr(pm, events, [e for e in getattr(pm, events) if e.time < seconds])
    return pm


def _normalise(audio: np.ndarray) -> np.ndarray:
    """Scale to a 0.9 peak; silence (no notes, drums only under sines) stays silent, not NaN."""
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    return audio * (0.9 / peak) if peak > 0 else audio


def _describe(pm: Any) -> dict[str, Any]:
    """Statistics of one decoded piece; pitch statistics leave drums out (their pitch is a drum)."""
    notes = [n for inst in pm.instruments for n in inst.notes]
    pitches = np.array([n.pitch for inst in pm.instruments if not inst.is_drum for n in inst.notes], dtype=float)
    end = pm.get_end_time()
    return {
        "notes": len(notes),
        "notes_per_second": len(notes) / end if end > 0 else 0.0,
        "pitch_range": float(pitches.max() - pitches.min()) if pitches.size else 0.0,
        "pitches": pitches,
        "polyphony": _polyphony(pm),
    }


def _polyphony(pm: Any, fs: int = 50) -> float:
    """Mean number of pitches sounding together, over the 20 ms frames where anything sounds."""
    active = (pm.get_piano_roll(fs=fs) > 0).sum(axis=0)  # (frames,) pitches on per frame
    sounding = active[active > 0]
    return float(sounding.mean()) if sounding.size else 0.0
