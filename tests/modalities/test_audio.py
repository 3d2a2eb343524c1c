"""Audio modality: mu-law bounds, band-limited resampling, broken files, WAV output, statistics.

Signals are generated in the tests; ``assets/audio/speech.flac`` is the one real-speech fixture
(1.6 s, 16 kHz, espeak-ng; see assets/audio/README.md).
"""

from __future__ import annotations

import json
import math
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from wgpt.errors import WgptError
from wgpt.modalities import audio as audio_module
from wgpt.modalities import modality_from_spec
from wgpt.modalities.audio import PEAK, AudioModality, mulaw_decode, mulaw_encode
from wgpt.modalities.base import Piece, SkipFile
from wgpt.preparation import prepare
from wgpt.shards import open_shards

SPEECH = Path(__file__).parents[1] / "assets" / "audio" / "speech.flac"


def tone(freq: float, rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def amplitude_at(x: np.ndarray, rate: int, freq: float) -> float:
    """Sine amplitude at ``freq`` (Hann window, strongest bin within 20 Hz)."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size))) * 4 / x.size
    freqs = np.fft.rfftfreq(x.size, 1 / rate)
    return float(spectrum[np.abs(freqs - freq) <= 20].max())


def peak_frequency(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / rate)[spectrum.argmax()])


def decoded(modality: AudioModality, path: Path) -> np.ndarray:
    return mulaw_decode(modality.load(path), modality.bits)


# -- mu-law -----------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [2, 8, 16])
def test_mulaw_error_is_within_the_companding_bound(bits: int) -> None:
    # Encoding rounds F(x) to a grid of spacing 2/mu, so F(x) moves by at most 1/mu and keeps its sign
    # (0 is not a level: the levels nearest it are +-1/mu). The inverse
    # g(y) = ((1+mu)^|y| - 1)/mu is convex with g(|y| + 1/mu) - g(|y|) = (|x| + 1/mu)((1+mu)^(1/mu) - 1),
    # hence |x - decode(encode(x))| <= (|x| + 1/mu) * ((1+mu)^(1/mu) - 1).
    mu = 2**bits - 1
    x = np.linspace(-1.0, 1.0, 400_001)
    error = np.abs(mulaw_decode(mulaw_encode(x, bits), bits) - x)
    bound = (np.abs(x) + 1 / mu) * ((1 + mu) ** (1 / mu) - 1)
    assert np.all(error <= bound * (1 + 1e-9) + 1e-15)
    assert (error / bound).max() > 0.9  # the bound is tight: reached between two levels


def test_mulaw_quiet_samples_are_finer_than_loud_ones() -> None:
    levels = mulaw_decode(np.arange(256), 8)
    steps = np.diff(levels)[127:]  # from the step across 0 outwards
    assert np.all(np.diff(steps) > 0)
    # consecutive levels (1+mu)^(k/mu) apart in 1 + mu|x|: the outermost step over the first one
    # beside the centre is (1+mu)^((mu-3)/mu), close to the slope ratio F'(0)/F'(1) = 1 + mu
    assert steps[-1] / steps[1] == pytest.approx(256 ** (252 / 255), rel=1e-9)
    x = np.linspace(-1, 1, 200_001)
    error = np.abs(mulaw_decode(mulaw_encode(x, 8), 8) - x)
    assert error[np.abs(x) < 0.01].max() < error[np.abs(x) > 0.5].mean() / 20


@pytest.mark.parametrize("bits", [2, 8, 12, 16])
def test_mulaw_levels_round_trip_exactly_and_ends_clip(bits: int) -> None:
    ids = np.arange(2**bits)
    assert np.array_equal(mulaw_encode(mulaw_decode(ids, bits), bits), ids)
    assert mulaw_encode(np.array([-3.0, -1.0, 1.0, 3.0]), bits).tolist() == [0, 0, 2**bits - 1, 2**bits - 1]
    assert mulaw_encode(np.zeros(1), bits).dtype == (np.uint8 if bits <= 8 else np.uint16)


def test_mulaw_golden_values_at_8_bits() -> None:
    # worked by hand: F(0.5) = ln(128.5)/ln(256) = 0.87570 -> floor(1.87570/2 * 255 + 0.5) = 239
    assert mulaw_encode(np.array([-1.0, 0.0, 0.5, 1.0]), 8).tolist() == [0, 128, 239, 255]
    assert mulaw_decode(np.array([128]), 8)[0] == pytest.approx((256 ** (1 / 255) - 1) / 255)


# -- reading and resampling -------------------------------------------------------------------
def test_resampling_keeps_a_sine_frequency(tmp_path: Path) -> None:
    x = tone(1000, 44100, 2.0)
    sf.write(tmp_path / "a.wav", np.stack([x, x], axis=1), 44100, subtype="PCM_16")
    y = decoded(AudioModality(), tmp_path / "a.wav")
    assert abs(y.size - 32000) <= 1
    assert peak_frequency(y, 16000) == pytest.approx(1000, abs=2)


def test_resampling_removes_what_lies_above_the_new_nyquist(tmp_path: Path) -> None:
    x = tone(7500, 44100, 2.0, 0.4) + tone(12000, 44100, 2.0, 0.4)
    sf.write(tmp_path / "a.wav", x, 44100, subtype="FLOAT")
    y = decoded(AudioModality(), tmp_path / "a.wav")
    # 12 kHz folds to 16 - 12 = 4 kHz when decimated naively; the band-limited resampler removes it
    assert amplitude_at(y, 16000, 4000) < 1e-3 * amplitude_at(y, 16000, 7500)
    naive = x[np.round(np.arange(32000) * 44100 / 16000).astype(int)]
    assert amplitude_at(naive, 16000, 4000) > 0.5 * amplitude_at(naive, 16000, 7500)  # the check can fail


def test_stereo_is_mixed_to_mono_by_averaging(tmp_path: Path) -> None:
    left, right = tone(440, 16000, 1.0), tone(660, 16000, 1.0)
    sf.write(tmp_path / "lr.wav", np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    y = decoded(AudioModality(), tmp_path / "lr.wav")
    assert amplitude_at(y, 16000, 440) == pytest.approx(amplitude_at(y, 16000, 660), rel=0.02)
    mono = ((left + right) / 2).astype(np.float32)
    expected = mulaw_encode(mono * np.float32(PEAK / np.abs(mono).max()), 8)
    assert np.abs(AudioModality().load(tmp_path / "lr.wav").astype(int) - expected).max() <= 1
    sf.write(tmp_path / "cancel.wav", np.stack([left, -left], axis=1), 16000, subtype="FLOAT")
    with pytest.raises(SkipFile, match="silent"):  # anti-phase channels average to nothing
        AudioModality().load(tmp_path / "cancel.wav")


def test_fixture_at_the_model_rate_loads_sample_for_sample() -> None:
    x, rate = sf.read(SPEECH)
    ids = AudioModality().load(SPEECH)
    assert rate == 16000 and ids.size == x.size
    y = mulaw_decode(ids, 8)
    assert np.abs(y).max() == pytest.approx(PEAK, abs=0.01)
    assert np.corrcoef(x, y)[0, 1] > 0.999
    assert AudioModality().statistics([ids.tolist()])["clipped_fraction"] == 0.0  # the peak stays below clipping


def test_speech_at_8khz_loads_as_the_band_limited_original(tmp_path: Path) -> None:
    x, _ = sf.read(SPEECH)
    narrow = soxr.resample(x, 16000, 8000)
    sf.write(tmp_path / "phone.wav", narrow, 8000, subtype="PCM_16")
    y = decoded(AudioModality(), tmp_path / "phone.wav")
    reference = soxr.resample(narrow, 8000, 16000)  # the original without what lies above 4 kHz
    assert abs(y.size - x.size) <= 1
    n = min(y.size, reference.size)
    assert np.corrcoef(y[:n], reference[:n])[0, 1] > 0.995


def test_stereo_ogg_at_44khz_loads(tmp_path: Path) -> None:
    x = tone(440, 44100, 1.5, 0.3) + tone(1000, 44100, 1.5, 0.1)
    sf.write(tmp_path / "a.ogg", np.stack([x, 0.5 * x], axis=1), 44100, format="OGG", subtype="VORBIS")
    y = decoded(AudioModality(), tmp_path / "a.ogg")
    assert abs(y.size - 24000) <= 1
    assert peak_frequency(y, 16000) == pytest.approx(440, abs=2)
    assert amplitude_at(y, 16000, 1000) / amplitude_at(y, 16000, 440) == pytest.approx(1 / 3, rel=0.05)


def test_block_boundaries_leave_no_trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "n.flac", rng.uniform(-0.5, 0.5, size=(30000, 2)), 22050)
    whole = AudioModality().load(tmp_path / "n.flac")
    monkeypatch.setattr(audio_module, "BLOCK_FRAMES", 997)
    assert np.array_equal(AudioModality().load(tmp_path / "n.flac"), whole)


def test_higher_rates_and_bits_change_the_payload(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", tone(440, 44100, 1.0), 44100)
    ids = AudioModality(sample_rate=24000, bits=12).load(tmp_path / "a.wav")
    assert ids.dtype == np.uint16 and abs(ids.size - 24000) <= 1 and ids.max() < 4096
    assert peak_frequency(mulaw_decode(ids, 12), 24000) == pytest.approx(440, abs=2)


# -- broken files -----------------------------------------------------------------------------
def make_broken_files(folder: Path) -> dict[str, str]:
    """Broken files in ``folder``, mapped to a word their skip reason must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.wav").write_bytes(b"")
    sf.write(folder / "good_for_header.wav", tone(440, 16000, 0.5), 16000)
    header = (folder / "good_for_header.wav").read_bytes()[:30]
    (folder / "good_for_header.wav").unlink()
    (folder / "truncated.wav").write_bytes(header)
    (folder / "notes.wav").write_text("take 3: the good one is on the other drive\n" * 5)
    sf.write(folder / "silent.wav", np.zeros(16000), 16000)
    sf.write(folder / "hiss.flac", np.full(8000, 2e-4), 16000, subtype="PCM_24")  # -74 dBFS
    return {
        "empty.wav": "empty",
        "truncated.wav": "corrupt",
        "notes.wav": "text",
        "silent.wav": "silent",
        "hiss.flac": "silent",
    }


def test_broken_files_are_skipped_with_reasons(tmp_path: Path) -> None:
    expected = make_broken_files(tmp_path)
    for name, word in expected.items():
        with pytest.raises(SkipFile, match=word):
            AudioModality().load(tmp_path / name)


def test_damage_inside_the_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sf.write(tmp_path / "a.wav", tone(440, 16000, 1.0), 16000, subtype="PCM_16")
    whole = (tmp_path / "a.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(whole[: 44 + 2 * 6000])  # the header promises 16000 frames
    assert AudioModality().load(tmp_path / "cut.wav").size == 6000  # what is there is kept
    x = tone(440, 16000, 2.0)
    x[24321] = np.nan
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    monkeypatch.setattr(audio_module, "BLOCK_FRAMES", 5000)  # the NaN lies in the fifth block
    with pytest.raises(SkipFile, match=r"NaN or infinite samples at 1\.52 s"):
        AudioModality().load(tmp_path / "nan.wav")


def test_prepare_skips_broken_files_and_reports_them(tmp_path: Path) -> None:
    src = tmp_path / "src"
    broken = make_broken_files(src)
    sf.write(src / "phone.wav", soxr.resample(sf.read(SPEECH)[0], 16000, 8000), 8000, subtype="PCM_16")
    x = tone(220, 44100, 1.0, 0.3)
    sf.write(src / "music.ogg", np.stack([x, x], axis=1), 44100, format="OGG", subtype="VORBIS")
    shutil.copy(SPEECH, src / "speech.flac")
    modality = AudioModality()
    samples = sum(modality.load(src / n).size for n in ("phone.wav", "music.ogg", "speech.flac"))

    report = prepare(modality, [src], tmp_path / "out", workers=1, show_progress=False)
    assert report.files == 3
    assert {Path(p).name: r for p, r in report.skipped}.keys() == broken.keys()
    for path, reason in report.skipped:
        assert broken[Path(path).name] in reason
    listed = json.loads((tmp_path / "out" / "report.json").read_text())["skipped"]
    assert sorted(Path(s["path"]).name for s in listed) == sorted(broken)
    assert report.units["train"]["sample"] + report.units["val"]["sample"] == samples
    assert report.tokens["train"] + report.tokens["val"] == samples
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["vocab_size"] == 256 and modality_from_spec(meta["modality"]).spec() == modality.spec()


def test_prepare_with_only_broken_files_is_an_error(tmp_path: Path) -> None:
    make_broken_files(tmp_path / "src")
    with pytest.raises(WgptError, match="no usable audio files"):
        prepare(AudioModality(), [tmp_path / "src"], tmp_path / "out", workers=1, show_progress=False)


def test_a_single_recording_gives_its_tail_to_validation(tmp_path: Path) -> None:
    ids = AudioModality().load(SPEECH)
    report = prepare(AudioModality(), [SPEECH], tmp_path / "out", val_fraction=0.2, workers=1, show_progress=False)
    cut = round(ids.size * 0.8)
    assert (report.tokens["train"], report.tokens["val"]) == (cut, ids.size - cut)
    shards = open_shards(tmp_path / "out")
    assert np.array_equal(np.asarray(shards.val), ids[cut:]) and np.array_equal(np.asarray(shards.train), ids[:cut])
    assert report.validation == [{"file": str(SPEECH), "from": cut}]


# -- long recordings, in pieces ----------------------------------------------------------------
@pytest.fixture
def long_take(tmp_path: Path) -> Path:
    """20 s of a gliding tone at 44.1 kHz, stereo: cut into 4 pieces when pieces hold 6 s."""
    rate = 44100
    t = np.arange(20 * rate) / rate
    left = 0.3 * np.sin(2 * np.pi * (200 + 40 * t) * t)
    sf.write(tmp_path / "take.flac", np.stack([left, 0.5 * left], axis=1), rate, subtype="PCM_16")
    return tmp_path / "take.flac"


def test_a_long_recording_in_pieces_is_nearly_the_recording_whole(long_take: Path, monkeypatch) -> None:
    whole = AudioModality().load(long_take)
    monkeypatch.setattr(AudioModality, "piece_extent", 6 * 44100)
    report = prepare(AudioModality(), [long_take], long_take.parent / "out", val_fraction=0.3, workers=2, show_progress=False)
    shards = open_shards(long_take.parent / "out")
    pieced = np.concatenate([np.asarray(shards.train), np.asarray(shards.val)])
    assert pieced.size == whole.size
    # the resampler sees 0.1 s around each cut: a few samples land one mu-law level away, no more
    assert np.abs(pieced.astype(int) - whole.astype(int)).max() <= 1 and np.count_nonzero(pieced != whole) < 50
    assert report.validation[0]["from"] % 441 == 0  # cut on a whole resampling period (44.1 kHz -> 16 kHz)


def test_workers_do_not_change_the_pieces_of_a_long_recording(long_take: Path, monkeypatch) -> None:
    monkeypatch.setattr(AudioModality, "piece_extent", 6 * 44100)
    for workers in (1, 2):
        prepare(AudioModality(), [long_take, SPEECH], long_take.parent / f"w{workers}", workers=workers, show_progress=False)
    one, two = open_shards(long_take.parent / "w1"), open_shards(long_take.parent / "w2")
    assert np.array_equal(np.asarray(one.train), np.asarray(two.train)) and np.array_equal(np.asarray(one.val), np.asarray(two.val))


# -- the rest of the interface ----------------------------------------------------------------
def test_encode_counts_samples_and_seconds(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", 0.5 * np.sin(np.arange(4000) / 5.0), 8000, subtype="PCM_16")
    modality = AudioModality(sample_rate=8000)
    ids, units = modality.encode(Piece(tmp_path / "a.wav", *modality.plan(tmp_path / "a.wav")))
    assert ids.dtype == np.uint8 and ids.size == 4000
    assert units == {"sample": 4000, "second": 0.5}


@pytest.mark.parametrize(("rate", "bits"), [(16000, 8), (22050, 12)])
def test_write_gives_mono_16bit_wav_at_the_model_rate(tmp_path: Path, rate: int, bits: int) -> None:
    ids = np.random.default_rng(1).integers(0, 2**bits, size=12345)
    AudioModality(rate, bits).write(ids.tolist(), tmp_path / "x.wav")
    info = sf.info(tmp_path / "x.wav")
    assert (info.format, info.subtype, info.channels, info.samplerate, info.frames) == ("WAV", "PCM_16", 1, rate, 12345)
    pcm, _ = sf.read(tmp_path / "x.wav", dtype="int16")
    assert np.abs(pcm / 32767 - mulaw_decode(ids, bits)).max() <= 0.5 / 32767 + 1e-12
    assert [p.name for p in tmp_path.iterdir()] == ["x.wav"]  # no temporary file left behind


def test_written_8bit_ids_survive_the_wav(tmp_path: Path) -> None:
    ids = np.arange(256).repeat(3)
    AudioModality().write(ids.tolist(), tmp_path / "x.wav")
    pcm, _ = sf.read(tmp_path / "x.wav", dtype="int16")
    assert np.array_equal(mulaw_encode(pcm / 32767, 8), ids)


def test_write_refuses_other_formats_and_foreign_ids(tmp_path: Path) -> None:
    with pytest.raises(WgptError, match=r"x\.wav"):
        AudioModality().write([1, 2], tmp_path / "x.mp3")
    with pytest.raises(ValueError, match="vocabulary of 256"):
        AudioModality().write([0, 256], tmp_path / "x.wav")


def test_encode_prompt_uses_the_training_pipeline(tmp_path: Path) -> None:
    modality = AudioModality()
    assert modality.encode_prompt(None, SPEECH) == modality.load(SPEECH).tolist()
    assert modality.encode_prompt(None, None) == []
    with pytest.raises(WgptError, match="--prompt-file"):
        modality.encode_prompt("a cello", None)
    (tmp_path / "notes.wav").write_text("not audio")
    with pytest.raises(WgptError, match=r"prompt file .*notes\.wav: text"):
        modality.encode_prompt(None, tmp_path / "notes.wav")


@pytest.mark.parametrize("bits", [2, 8, 16])
def test_unprompted_samples_start_from_silence(bits: int) -> None:
    (start,) = AudioModality(bits=bits).start_ids()
    levels = mulaw_decode(np.arange(2**bits), bits)
    assert abs(levels[start]) == np.abs(levels).min()


def test_spec_and_pickle_round_trip() -> None:
    modality = AudioModality(sample_rate=22050, bits=10)
    for copy in (modality_from_spec(json.loads(json.dumps(modality.spec()))), pickle.loads(pickle.dumps(modality))):
        assert isinstance(copy, AudioModality)
        assert (copy.sample_rate, copy.bits, copy.vocab_size, copy.tokens_per_second) == (22050, 10, 1024, 22050)
    with pytest.raises(WgptError, match="mu-law only"):
        AudioModality.from_spec({**modality.spec(), "encoding": "linear"})


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"bits": 1}, "--bits"),
        ({"bits": 17}, "--bits"),
        ({"bits": 8.0}, "--bits"),
        ({"bits": True}, "--bits"),
        ({"sample_rate": 999}, "--sample-rate"),
        ({"sample_rate": 192001}, "--sample-rate"),
    ],
)
def test_constructor_names_the_bad_flag(kwargs: dict, flag: str) -> None:
    with pytest.raises(WgptError, match=flag):
        AudioModality(**kwargs)


def test_extensions_follow_libsndfile() -> None:
    assert {".wav", ".flac", ".ogg"} <= set(AudioModality.extensions)
    assert (".mp3" in AudioModality.extensions) == ("MP3" in sf.available_formats())


def test_statistics_of_a_known_sine() -> None:
    modality = AudioModality()
    ids = mulaw_encode(tone(1000, 16000, 2.0), 8).tolist()
    stats = modality.statistics([ids])
    assert stats["rms"] == pytest.approx(0.5 / math.sqrt(2), rel=0.02)
    assert stats["clipped_fraction"] == 0.0
    assert stats["spectral_centroid_hz"] == pytest.approx(1000, rel=0.05)
    assert stats["zero_crossings_per_s"] == pytest.approx(2000, rel=0.01)


def test_statistics_aggregate_over_sequences() -> None:
    modality = AudioModality()
    loud = [0, 255] * 800  # full-scale square wave: every sample clipped
    quiet = mulaw_encode(tone(4000, 16000, 0.1, 0.01), 8).tolist()  # 1600 samples
    both = modality.statistics([loud, quiet])
    assert modality.statistics([loud])["clipped_fraction"] == 1.0
    assert both["clipped_fraction"] == pytest.approx(0.5)
    assert both["rms"] == pytest.approx(math.sqrt((1 + 0.01**2 / 2) / 2), rel=0.01)
    assert 4000 < both["spectral_centroid_hz"] < 8000  # the square wave sits at Nyquist, the sine at 4 kHz
    assert modality.statistics([]) == {} and modality.statistics([[]]) == {}
