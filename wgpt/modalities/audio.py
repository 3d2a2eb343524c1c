"""Audio as mu-law samples: one token per sample, 256 ids at 8 bits, 16,000 tokens per second.

This is the paper's audio setup (YouTube-Mix piano as 8-bit mu-law samples at 16 kHz), the
SampleRNN/WaveNet/SaShiMi recipe. ``encode`` turns any file libsndfile reads into ids:

1. read in blocks of ``BLOCK_FRAMES`` (any rate, any channel count), so a long recording is never
   held at its source rate;
2. mix to mono by averaging the channels;
3. resample to the model rate with soxr's band-limited "HQ" filter (a streaming resampler, so block
   boundaries leave no trace), which removes everything above the new Nyquist frequency instead of
   folding it back as aliasing;
4. peak-normalise the whole file so its loudest sample is ``PEAK`` (0.95) of full scale. One gain
   per file keeps the file's own dynamics (a quiet intro stays quiet) while putting every file in
   the same range. From 7 bits up the headroom keeps even the loudest sample out of the two
   outermost classes (decoded ``|x| >= 0.999``), so ``clipped_fraction`` of prepared data is 0 and
   a model whose samples saturate shows up in ``wgpt eval``. Files whose peak is below ``SILENCE_PEAK``
   (-60 dBFS) are skipped as silent rather than amplified noise;
5. mu-law encode to ``2**bits`` classes with mu = 2**bits - 1, rounding to the nearest level
   (the WaveNet/torchaudio convention). Companding spends the classes logarithmically, so quiet
   passages keep their detail: the step between levels grows with amplitude, and near 0 it is
   1/(1 + mu) of the step near full scale (1/256 at 8 bits).

Recordings longer than ``PIECE_FRAMES`` are cut into pieces on whole resampling periods, which
workers read in parallel; a first pass over the pieces finds the file's peak (step 4), so no
recording is ever held whole. Ids are ``uint8`` (``uint16`` above 8 bits).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import soundfile as sf
import soxr

from wgpt.errors import WgptError
from wgpt.io import write_wav
from wgpt.modalities.base import Modality, Piece, SkipFile

ENCODING = "mu-law"
PEAK = 0.95  # each file's loudest sample after normalisation (see the module docstring)
SILENCE_PEAK = 1e-3  # -60 dBFS: normalising a quieter file takes over 1000x gain, which mostly amplifies noise
CLIP_LEVEL = 0.999  # decoded |x| at or above this counts as clipped: only the outermost classes reach it
BLOCK_FRAMES = 1 << 16  # frames read per block: about 1.5 s at 44.1 kHz
MIN_SOURCE_RATE, MAX_SOURCE_RATE = 1000, 768_000  # rates recordings have; others come from damaged headers
PIECE_FRAMES = 1 << 26  # source frames per piece: 25 minutes at 44.1 kHz, which keeps most tracks whole (one decoding pass)
MARGIN_S = 0.1  # seconds of neighbouring audio the resampler sees around a piece (its filter spans milliseconds)
RESAMPLE_QUALITY = "HQ"  # soxr: 20-bit precision, passband to 91% of the output Nyquist
CENTROID_FRAME = 1024  # samples per FFT frame of the spectral centroid (64 ms at 16 kHz)
PCM_SCALE = 32767  # float to 16-bit PCM for written WAVs

# libsndfile's format names and the file extensions that carry them
_FORMAT_EXTENSIONS = {
    "WAV": (".wav",),
    "FLAC": (".flac",),
    "OGG": (".ogg", ".oga", ".opus"),
    "AIFF": (".aiff", ".aif"),
    "AU": (".au",),
    "MP3": (".mp3",),
}


def _readable_extensions() -> tuple[str, ...]:
    """The extensions this build of libsndfile reads: MP3 only from libsndfile 1.1 on."""
    formats = sf.available_formats()
    return tuple(ext for name, exts in _FORMAT_EXTENSIONS.items() if name in formats for ext in exts)


# -- mu-law ---------------------------------------------------------------------------------------
def _id_dtype(bits: int) -> np.dtype:
    return np.dtype(np.uint8) if bits <= 8 else np.dtype(np.uint16)


def mulaw_encode(x: np.ndarray, bits: int) -> np.ndarray:
    """Samples in [-1, 1] to mu-law class ids in [0, 2**bits): compand, then round to the nearest level.

    F(x) = sign(x) ln(1 + mu|x|) / ln(1 + mu) with mu = 2**bits - 1 maps [-1, 1] onto [-1, 1]; its
    2**bits equally spaced levels are dense near 0, where most audio samples are. Values outside
    [-1, 1] are clipped.
    """
    mu = 2**bits - 1
    x = np.clip(np.asarray(x, dtype=np.result_type(x, np.float32)), -1.0, 1.0)
    companded = np.sign(x) * np.log1p(mu * np.abs(x)) / math.log1p(mu)
    return np.floor((companded + 1.0) / 2.0 * mu + 0.5).astype(_id_dtype(bits))


def mulaw_decode(ids: np.ndarray, bits: int) -> np.ndarray:
    """Class ids to samples in [-1, 1]: the inverse of ``mulaw_encode`` at each level (float64)."""
    mu = 2**bits - 1
    companded = 2.0 * np.asarray(ids, dtype=np.float64) / mu - 1.0
    return np.sign(companded) * np.expm1(np.abs(companded) * math.log1p(mu)) / mu


# -- reading files --------------------------------------------------------------------------------
def _looks_like_text(path: Path) -> bool:
    """True when the file starts with printable UTF-8, e.g. notes or HTML saved under a .wav name."""
    with open(path, "rb") as f:
        head = f.read(512)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return bool(text) and all(c.isprintable() or c in "\r\n\t" for c in text)


def _libsndfile_detail(err: Exception) -> str:
    """libsndfile's own words for an error, without the path soundfile puts in front of them."""
    detail = getattr(err, "error_string", None) or str(err)
    return detail.strip().rstrip(".")


def _open(path: Path) -> sf.SoundFile:
    """Open ``path`` for reading, or raise ``SkipFile`` saying what kind of broken file it is."""
    if path.stat().st_size == 0:
        raise SkipFile("empty file (0 bytes)")
    try:
        f = sf.SoundFile(path)
    except sf.LibsndfileError as err:
        if _looks_like_text(path):
            raise SkipFile("text, not audio (renamed or mislabelled file)") from None
        detail = _libsndfile_detail(err)
        if "not recognised" in detail:
            raise SkipFile(f"not a format libsndfile reads ({detail}); convert it to WAV or FLAC with ffmpeg") from None
        raise SkipFile(f"corrupt or unsupported audio ({detail})") from None
    if not MIN_SOURCE_RATE <= f.samplerate <= MAX_SOURCE_RATE:  # resampling 1 Hz to 16 kHz asks for 16,000 times the samples
        f.close()
        raise SkipFile(
            f"a sample rate of {f.samplerate:,} Hz, outside {MIN_SOURCE_RATE:,}-{MAX_SOURCE_RATE:,} Hz (a damaged or crafted header)"
        )
    return f


def _resampler(source_rate: int, rate: int) -> soxr.ResampleStream:
    """A streaming resampler: its state carries across blocks, so the output equals one-shot resampling."""
    return soxr.ResampleStream(source_rate, rate, 1, dtype="float32", quality=RESAMPLE_QUALITY)


def _check_finite(mono: np.ndarray, start: float, rate: int) -> None:
    """Float files can hold NaN or inf, which no gain or encoding can repair: say where the first one is."""
    bad = ~np.isfinite(mono)
    if bad.any():
        raise SkipFile(f"NaN or infinite samples at {start + bad.argmax() / rate:.2f} s (corrupt float data)")


def _read_mono(path: Path, rate: int) -> list[np.ndarray]:
    """Decode all of ``path`` block by block to mono float32 at ``rate``; a list of chunks, in order."""
    with _open(path) as f:
        if f.frames == 0:
            raise SkipFile("no audio frames (an empty recording, or a truncated file)")
        return _decode(f, rate, 0, f.frames)


def _decode(f: sf.SoundFile, rate: int, start: int, stop: int) -> list[np.ndarray]:
    """Source frames ``[start, stop)`` of an open file as mono float32 chunks at ``rate``."""
    stream = None if f.samplerate == rate else _resampler(f.samplerate, rate)
    chunks = []
    try:
        f.seek(start)
        for block in f.blocks(BLOCK_FRAMES, frames=stop - start, dtype="float32", always_2d=True):
            mono = np.ascontiguousarray(block.mean(axis=1, dtype=np.float32))  # (frames,)
            _check_finite(mono, (f.tell() - block.shape[0]) / f.samplerate, f.samplerate)
            chunks.append(stream.resample_chunk(mono) if stream else mono)
    except sf.LibsndfileError as err:
        where = f.tell() / f.samplerate
        raise SkipFile(f"corrupt audio data near {where:.1f} s ({_libsndfile_detail(err)})") from None
    if stream:
        chunks.append(stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True))  # the filter's tail
    return chunks


def _period(source_rate: int, rate: int) -> int:
    """Source frames in one whole resampling period: cut there, a piece starts on an output sample."""
    return source_rate // math.gcd(source_rate, rate)


def _read_span(path: Path, rate: int, start: int, stop: int) -> list[np.ndarray]:
    """Source frames ``[start, stop)`` as mono float32 chunks at ``rate``, for a piece of a long file.

    The resampler sees ``MARGIN_S`` of the neighbouring audio on each side (then dropped), so the
    piece is filtered as it would be inside the whole recording, up to the filter's precision.
    """
    with _open(path) as f:
        period = _period(f.samplerate, rate)
        margin = period * math.ceil(f.samplerate * MARGIN_S / period)
        low, high = max(0, start - margin), min(f.frames, stop + margin)
        chunks = _decode(f, rate, low, high)
    first = (start - low) * rate // f.samplerate  # exact: start and low lie on whole periods
    count = None if stop >= f.frames else (stop - start) * rate // f.samplerate  # the last piece keeps the filter's tail
    return _slice_chunks(chunks, first, count)


def _slice_chunks(chunks: list[np.ndarray], first: int, count: int | None) -> list[np.ndarray]:
    """Samples ``[first, first + count)`` of chunks laid end to end (to the end if ``count`` is None),
    as views: a piece is never copied whole, and is encoded chunk by chunk."""
    out, position, end = [], 0, None if count is None else first + count
    for chunk in chunks:
        low, high = max(first - position, 0), chunk.size if end is None else min(end - position, chunk.size)
        if high > low:
            out.append(chunk[low:high])
        position += chunk.size
    return out


def _dbfs(amplitude: float) -> float:
    return 20 * math.log10(amplitude)


def _peak(chunks: list[np.ndarray]) -> float:
    return max((float(np.abs(c).max()) for c in chunks if c.size), default=0.0)


def _gain(peak: float) -> np.float32:
    """The one gain of a recording whose loudest sample is ``peak``, or ``SkipFile`` if it is silent."""
    if peak == 0.0:
        raise SkipFile("silent (every sample is zero)")
    if peak < SILENCE_PEAK:
        raise SkipFile(f"silent (peak {_dbfs(peak):.0f} dBFS, below {_dbfs(SILENCE_PEAK):.0f} dBFS)")
    return np.float32(PEAK / peak)


def _encode_chunks(chunks: list[np.ndarray], gain: np.float32, bits: int) -> np.ndarray:
    """Scale by ``gain`` and mu-law encode, one chunk at a time."""
    ids = np.empty(sum(c.size for c in chunks), dtype=_id_dtype(bits))
    start = 0
    for chunk in chunks:
        ids[start : start + chunk.size] = mulaw_encode(chunk * gain, bits)
        start += chunk.size
    return ids


# -- statistics -----------------------------------------------------------------------------------
def _centroid_sums(x: np.ndarray, rate: int) -> tuple[float, float]:
    """Sum over Hann-windowed frames of (frequency x magnitude) and of magnitude, for one signal."""
    frame = min(CENTROID_FRAME, x.size)
    n = x.size // frame
    frames = x[: n * frame].reshape(n, frame) * np.hanning(frame)  # (n, frame)
    magnitude = np.abs(np.fft.rfft(frames, axis=1))  # (n, frame // 2 + 1)
    freqs = np.fft.rfftfreq(frame, d=1.0 / rate)
    return float((magnitude @ freqs).sum()), float(magnitude.sum())


def _zero_crossings(x: np.ndarray) -> int:
    return int(np.count_nonzero(np.signbit(x[1:]) != np.signbit(x[:-1])))


class AudioModality(Modality):
    name: ClassVar[str] = "audio"
    extensions: ClassVar[tuple[str, ...]] = _readable_extensions()
    output_extensions: ClassVar[tuple[str, ...]] = (".wav",)
    piece_extent: ClassVar[int | None] = PIECE_FRAMES
    position_unit: ClassVar[str] = "source frame"

    def __init__(self, sample_rate: int = 16000, bits: int = 8) -> None:
        if not _is_int(sample_rate) or not 1000 <= sample_rate <= 192000:
            raise WgptError(f"--sample-rate must be a whole number of Hz between 1000 and 192000, got {sample_rate!r}")
        if not _is_int(bits) or not 2 <= bits <= 16:
            raise WgptError(f"--bits must be a whole number between 2 and 16, got {bits!r}")
        self.sample_rate = int(sample_rate)
        self.bits = int(bits)
        self.tokens_per_second = self.sample_rate  # one token per sample
        self.separator = None  # files are concatenated as they are: a cut between recordings is just a jump

    @property
    def vocab_size(self) -> int:
        return 2**self.bits

    def spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sample_rate": self.sample_rate,
            "bits": self.bits,
            "encoding": ENCODING,
            "peak": PEAK,
        }

    def waveform(self, ids: list[int]) -> tuple[np.ndarray, int]:
        return self.decode(ids), self.sample_rate

    def describe_ids(self) -> str:
        return (
            f"one id per sample of mono audio at {self.sample_rate} Hz, {self.bits}-bit {ENCODING} (mu = {2**self.bits - 1}, "
            f"ids 0-{2**self.bits - 1}, id {int(mulaw_encode(np.zeros(1), self.bits)[0])} is silence); each file was normalised to a peak of {PEAK}"
        )

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> AudioModality:
        if spec.get("encoding", ENCODING) != ENCODING:
            raise WgptError(f"audio encoding {spec['encoding']!r} is not supported here (mu-law only): upgrade wgpt")
        return cls(spec["sample_rate"], spec["bits"])

    # -- files to ids ---------------------------------------------------------------------
    def plan(self, path: Path) -> tuple[int, int]:
        """The file's source frames; a file libsndfile cannot open is skipped now."""
        with _open(Path(path)) as f:
            if f.frames == 0:
                raise SkipFile("no audio frames (an empty recording, or a truncated file)")
            return 0, f.frames

    def boundary(self, path: Path, position: int) -> int:
        """The first whole resampling period at or after ``position``."""
        period = _period(sf.info(str(path)).samplerate, self.sample_rate)
        return -(-position // period) * period

    def scan(self, piece: Piece) -> float:
        """A piece's peak, after mixing and resampling: the whole file gets one gain from them."""
        return _peak(_read_span(piece.path, self.sample_rate, piece.start, piece.stop))

    def combine(self, path: Path, facts: list[float]) -> np.float32:
        return _gain(max(facts, default=0.0))

    def encode(self, piece: Piece, facts: Any = None) -> tuple[np.ndarray, dict[str, float]]:
        if piece.whole:
            chunks = _read_mono(piece.path, self.sample_rate)
            gain = _gain(_peak(chunks))
        else:
            chunks, gain = _read_span(piece.path, self.sample_rate, piece.start, piece.stop), facts
        ids = _encode_chunks(chunks, gain, self.bits)
        return ids, {"sample": int(ids.size), "second": ids.size / self.sample_rate}

    def load(self, path: Path) -> np.ndarray:
        """All of one file's ids, as preparation gives them."""
        path = Path(path)
        return self.encode(Piece(path, *self.plan(path)))[0]

    def encode_prompt(self, text: str | None, path: Path | None) -> list[int]:
        """A prompt file goes through exactly the training pipeline; no prompt at all is an empty one."""
        if path is None:
            if text:
                raise WgptError("audio prompts come from a file: use --prompt-file in.wav")
            return []
        return self.encode_file(path)

    def start_ids(self) -> list[int]:
        """Unprompted samples start from the class nearest silence (there is no separator to start from)."""
        return [int(mulaw_encode(np.zeros(1), self.bits)[0])]

    # -- ids to files ---------------------------------------------------------------------
    def decode(self, ids: list[int]) -> np.ndarray:
        """The waveform, samples in [-1, 1] at ``sample_rate``."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"token id outside the vocabulary of {self.vocab_size}")
        return mulaw_decode(ids, self.bits)

    def write(self, ids: list[int], path: Path) -> list[Path]:
        """Mono 16-bit PCM WAV at the model's rate, written atomically."""
        path = Path(path)
        if path.suffix.lower() not in self.output_extensions:
            raise WgptError(f"audio is written as WAV: name the output {path.with_suffix('.wav').name}")
        write_wav(path, np.round(self.decode(ids) * PCM_SCALE).astype(np.int16), self.sample_rate)
        return [path]

    def statistics(self, sequences: list[list[int]]) -> dict[str, float]:
        """Loudness, clipping and brightness over all sequences ({} if there are no samples).

        rms and clipped_fraction are over every sample; spectral_centroid_hz is the magnitude-weighted
        mean frequency of Hann-windowed frames; zero_crossings_per_s counts sign changes within each
        sequence (a sine of f Hz gives 2f). Generated audio that is duller, noisier or more saturated
        than the validation audio shows up as a gap in these numbers.
        """
        signals = [mulaw_decode(np.asarray(s), self.bits) for s in sequences if len(s)]
        if not signals:
            return {}
        samples = sum(s.size for s in signals)
        centroid = np.array([_centroid_sums(s, self.sample_rate) for s in signals]).sum(axis=0)
        return {
            "rms": math.sqrt(sum(float(np.square(s).sum()) for s in signals) / samples),
            "clipped_fraction": sum(int(np.count_nonzero(np.abs(s) >= CLIP_LEVEL)) for s in signals) / samples,
            "spectral_centroid_hz": float(centroid[0] / centroid[1]) if centroid[1] > 0 else 0.0,
            "zero_crossings_per_s": sum(_zero_crossings(s) for s in signals) * self.sample_rate / samples,
        }


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
