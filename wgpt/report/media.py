"""Sound and pictures embedded in the page as data URIs, so that it opens with no network.

Audio is embedded as mono 16-bit PCM WAV, which every browser plays without a codec, at the
sample's own rate up to ``MAX_RATE``: an audio model's output is heard as it was generated, and
a MIDI rendering (22.05 kHz) is resampled down. One minute costs at most 16000 * 2 * 60 bytes,
2.56 MB once base64-encoded (``BYTES_PER_MINUTE``); a lossy codec would be smaller but would
blur the very artefacts a listener is judging. Spectrograms are small palette PNGs.
"""

from __future__ import annotations

import base64
import io

import numpy as np

from wgpt.io import wav_bytes as io_wav_bytes

MAX_RATE = 16000  # Hz: an audio model's usual rate; renders above it are resampled down
BYTES_PER_MINUTE = MAX_RATE * 2 * 60 * 4 // 3  # base64 of a minute of 16-bit audio at MAX_RATE
SPECTROGRAM_FFT = 256  # 62.5 Hz bins at 16 kHz: coarse, but a glance is all it is for
SPECTROGRAM_COLUMNS = 320  # at most this many time frames, however long the sample
SPECTROGRAM_RANGE_DB = 70.0  # quieter than the loudest bin by more than this is drawn black
SPECTROGRAM_LEVELS = 16  # colours: about 4.4 dB each


def data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def for_embedding(pcm: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
    """Mono float samples in [-1, 1] at no more than ``MAX_RATE`` Hz."""
    x = np.asarray(pcm, dtype=np.float32)
    if x.ndim > 1:
        x = x.mean(axis=1)
    if rate > MAX_RATE:
        import soxr

        x, rate = soxr.resample(x, rate, MAX_RATE).astype(np.float32), MAX_RATE
    return np.clip(x, -1.0, 1.0), rate


def wav_bytes(pcm: np.ndarray, rate: int) -> bytes:
    """``pcm`` (floats in [-1, 1]) as a mono 16-bit WAV file, in memory."""
    return io_wav_bytes(np.round(np.asarray(pcm) * 32767).astype("<i2"), rate)


def spectrogram(pcm: np.ndarray, rate: int) -> np.ndarray:
    """Log power (dB below the loudest bin, clipped at ``SPECTROGRAM_RANGE_DB``), (freq bins, frames),
    low frequencies first: Hann-windowed frames ``SPECTROGRAM_FFT`` long, hopped evenly so that
    there are at most ``SPECTROGRAM_COLUMNS`` of them."""
    x = np.asarray(pcm, dtype=np.float64)
    n = SPECTROGRAM_FFT
    x = np.pad(x, (0, max(0, n - x.size)))
    hop = max(1, -(-(x.size - n) // (SPECTROGRAM_COLUMNS - 1))) if x.size > n else 1
    starts = np.arange(0, x.size - n + 1, hop)
    frames = x[starts[:, None] + np.arange(n)] * np.hanning(n)  # (frames, n)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (frames, n // 2 + 1)
    db = 10 * np.log10(power + 1e-12)
    db = np.maximum(db - db.max(), -SPECTROGRAM_RANGE_DB)
    return db.T


def spectrogram_png(pcm: np.ndarray, rate: int) -> bytes:
    """The spectrogram as a PNG in ``SPECTROGRAM_LEVELS`` magma colours, one pixel per bin and frame
    (the page stretches it). A palette of few colours compresses a noisy spectrogram to a few
    kilobytes, where matplotlib's ``imsave`` (full colour and alpha) wrote ten times more. Pillow
    is matplotlib's own image library, so it is always there."""
    from matplotlib import colormaps
    from PIL import Image

    db = spectrogram(pcm, rate)[::-1]  # high frequencies at the top row
    levels = np.round((db + SPECTROGRAM_RANGE_DB) / SPECTROGRAM_RANGE_DB * (SPECTROGRAM_LEVELS - 1)).astype(np.uint8)
    palette = (colormaps["magma"](np.linspace(0, 1, SPECTROGRAM_LEVELS))[:, :3] * 255).astype(np.uint8)
    img = Image.fromarray(levels, mode="P")
    img.putpalette(palette.tobytes())
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
