"""MIDI modality: real folk tunes and a synthetic multi-track piece through the real pipeline.

Fixtures (tests/assets/midi, see make_fixtures.py there): good/ holds four O'Neill (1850) tunes
converted by abc2midi and a piano+bass+drums piece on a 1/8-beat grid; broken/ holds a truncated
copy of a tune, an empty file, a text file named .mid and a MIDI file without notes.
"""

from __future__ import annotations

import json
import pickle
import wave
from collections import defaultdict
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from wgpt.errors import WgptError
from wgpt.modalities import modality_from_spec
from wgpt.modalities.base import Piece, SkipFile
from wgpt.modalities.midi import TOKENIZERS, MidiModality
from wgpt.preparation import prepare
from wgpt.shards import open_shards

ASSETS = Path(__file__).parents[1] / "assets" / "midi"
GOOD = ASSETS / "good"
BROKEN = ASSETS / "broken"
TUNES = sorted(GOOD.glob("oneills1850-*.mid"))
MULTITRACK = GOOD / "multitrack.mid"
GRID = 1 / 8  # REMI's finest onset step, in quarter notes, at the default 8 positions per beat


@pytest.fixture(scope="module")
def remi() -> MidiModality:
    return MidiModality()


@pytest.fixture(scope="module")
def remi_bpe() -> MidiModality:
    modality = MidiModality(vocab_size=640)
    pieces = [Piece(f, *modality.plan(f)) for f in sorted(GOOD.glob("*.mid"))]
    modality.fit([modality.fit_sample(p) for p in pieces], len(pieces))
    return modality


def ids_of(modality: MidiModality, path: Path) -> list[int]:
    """What the pipeline stores for one file: the separator, then its tokens."""
    return [modality.separator, *modality.tokenize(modality.load(path))[0].tolist()]


def notes_by_voice(path: Path) -> tuple[dict[tuple[int, bool, int], list[float]], float]:
    """Onsets (seconds) per (program, is_drum, pitch), read with pretty_midi, and seconds per beat."""
    pm = pretty_midi.PrettyMIDI(str(path))
    voices: dict[tuple[int, bool, int], list[float]] = defaultdict(list)
    for inst in pm.instruments:
        for note in inst.notes:
            voices[(0 if inst.is_drum else inst.program, inst.is_drum, note.pitch)].append(note.start)
    return {k: sorted(v) for k, v in voices.items()}, 60.0 / pm.get_tempo_changes()[1][0]


def assert_same_notes(original: Path, written: Path, tolerance_beats: float) -> None:
    expected, beat = notes_by_voice(original)
    got, _ = notes_by_voice(written)
    assert {k: len(v) for k, v in got.items()} == {k: len(v) for k, v in expected.items()}
    worst = max(float(np.abs(np.subtract(got[k], expected[k])).max()) for k in expected)
    assert worst <= tolerance_beats * beat + 1e-3, f"onset moved by {worst:.4f} s"


# -- round trips -------------------------------------------------------------------------------
@pytest.mark.parametrize("path", TUNES, ids=lambda p: p.stem)
def test_tune_round_trip_keeps_pitches_and_onsets(remi: MidiModality, path: Path, tmp_path: Path) -> None:
    remi.write(ids_of(remi, path), tmp_path / "out.mid")
    assert_same_notes(path, tmp_path / "out.mid", tolerance_beats=GRID / 2)  # abc2midi starts notes 1 tick late


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_multitrack_round_trip_keeps_programs_exactly(tokenizer: str, tmp_path: Path) -> None:
    modality = MidiModality(tokenizer)
    modality.write(ids_of(modality, MULTITRACK), tmp_path / "out.mid")
    assert_same_notes(MULTITRACK, tmp_path / "out.mid", tolerance_beats=0.0)  # on the grid: exact
    programs = {(i.program, i.is_drum) for i in pretty_midi.PrettyMIDI(str(tmp_path / "out.mid")).instruments}
    assert {(0, False), (33, False)} <= programs and any(drum for _, drum in programs)


def test_bpe_shortens_and_decodes_to_the_same_music(remi: MidiModality, remi_bpe: MidiModality, tmp_path: Path) -> None:
    assert remi_bpe.vocab_size > remi.vocab_size
    for path in (MULTITRACK, TUNES[0]):
        base, merged = ids_of(remi, path), ids_of(remi_bpe, path)
        assert len(merged) < 0.8 * len(base)
        remi.write(base, tmp_path / "base.mid")
        remi_bpe.write(merged, tmp_path / "bpe.mid")
        assert notes_by_voice(tmp_path / "bpe.mid") == notes_by_voice(tmp_path / "base.mid")


def test_bpe_ids_match_miditoks_own_encoding(remi_bpe: MidiModality) -> None:
    for path in [*TUNES, MULTITRACK]:  # parity: load + tokenize equals MidiTok encoding the file itself
        assert ids_of(remi_bpe, path)[1:] == remi_bpe._tok.encode(path).ids


def test_units_count_notes_and_seconds(remi: MidiModality) -> None:
    for path in [*TUNES, MULTITRACK]:
        pm = pretty_midi.PrettyMIDI(str(path))
        _, units = remi.tokenize(remi.load(path))
        assert units["note"] == sum(len(i.notes) for i in pm.instruments)
        assert units["second"] == round(pm.get_end_time())


# -- spec and pickling ------------------------------------------------------------------------
@pytest.mark.parametrize("fixture", ["remi", "remi_bpe"])
def test_spec_is_json_and_rebuilds_identical_ids(fixture: str, request: pytest.FixtureRequest) -> None:
    modality = request.getfixturevalue(fixture)
    spec = modality.spec()
    assert spec["name"] == "midi" and json.loads(json.dumps(spec)) == spec
    rebuilt = modality_from_spec(json.loads(json.dumps(spec)))
    assert isinstance(rebuilt, MidiModality) and rebuilt.vocab_size == modality.vocab_size
    assert rebuilt.separator == modality.separator and rebuilt.spec() == spec
    for path in [*TUNES, MULTITRACK]:
        assert ids_of(rebuilt, path) == ids_of(modality, path)


def test_spec_that_builds_another_vocabulary_is_refused(remi_bpe: MidiModality) -> None:
    spec = json.loads(json.dumps(remi_bpe.spec()))
    spec["miditok"]["_vocab_base"]["Bar_None"] = 999  # what another miditok version could produce
    with pytest.raises(WgptError, match="cannot be rebuilt exactly"):
        MidiModality.from_spec(spec)


def test_pickled_modality_tokenizes_the_same(remi_bpe: MidiModality) -> None:
    copy = pickle.loads(pickle.dumps(remi_bpe))
    assert ids_of(copy, TUNES[1]) == ids_of(remi_bpe, TUNES[1])


# -- construction errors -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tokenizer": "CPWord"}, "choose one of REMI, TSD"),
        ({"tokenizer": "remi"}, "choose one of REMI"),
        ({"vocab_size": 100}, "--vocab-size must exceed the"),
        ({"tokenizer_params": {"use_programs": False}}, "must keep use_programs"),
    ],
)
def test_bad_options_are_one_line_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(WgptError, match=message) as err:
        MidiModality(**kwargs)
    assert "\n" not in str(err.value)


# -- broken files through the pipeline ---------------------------------------------------------
BROKEN_REASONS = {
    "empty.mid": "empty file",
    "not_midi.mid": "not a MIDI file",
    "truncated.mid": "truncated or corrupt: Invalid chunk length",
    "no_notes.mid": "no notes",
}


@pytest.mark.parametrize(("name", "reason"), BROKEN_REASONS.items())
def test_load_skips_broken_file_with_reason(remi: MidiModality, name: str, reason: str) -> None:
    with pytest.raises(SkipFile, match=reason):
        remi.load(BROKEN / name)


def test_notes_outside_the_pitch_range_leave_nothing_to_tokenize(remi: MidiModality, tmp_path: Path) -> None:
    pm = pretty_midi.PrettyMIDI()
    pm.instruments.append(pretty_midi.Instrument(program=0))
    pm.instruments[0].notes.append(pretty_midi.Note(80, 12, 0.0, 1.0))  # C0: below the piano's A0 (21)
    pm.write(str(tmp_path / "low.mid"))
    with pytest.raises(SkipFile, match=r"no notes within the tokenizer's pitch range \(21-109, drums 27-88\)"):
        remi.load(tmp_path / "low.mid")


def test_prepare_skips_broken_files_and_prepares_the_rest(remi: MidiModality, tmp_path: Path) -> None:
    report = prepare(MidiModality(), [GOOD, BROKEN], tmp_path / "out", workers=1, show_progress=False)
    assert report.files == 5
    assert {Path(p).name: r for p, r in report.skipped}.keys() == BROKEN_REASONS.keys()
    for path, reason in report.skipped:
        assert BROKEN_REASONS[Path(path).name] in reason
    listed = json.loads((tmp_path / "out" / "report.json").read_text())["skipped"]
    assert sorted(Path(s["path"]).name for s in listed) == sorted(BROKEN_REASONS)
    shards = open_shards(tmp_path / "out")
    expected = [ids_of(remi, p) for p in sorted(GOOD.glob("*.mid"))]
    assert len(shards.train) + len(shards.val) == sum(map(len, expected))
    notes = sum(shards.meta["splits"][s]["units"]["note"] for s in ("train", "val"))
    assert notes == sum(remi.load(p).notes for p in GOOD.glob("*.mid"))


def test_prepare_of_only_broken_files_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(WgptError, match="no usable midi files among 4"):
        prepare(MidiModality(), [BROKEN], tmp_path / "out", workers=1, show_progress=False)


def documents(ids: np.ndarray, separator: int) -> list[tuple[int, ...]]:
    return [tuple(doc.tolist()) for doc in np.split(ids, np.flatnonzero(ids == separator))[1:]]


def test_split_is_by_file_and_workers_do_not_change_the_shards(remi: MidiModality, tmp_path: Path) -> None:
    prepare(MidiModality(), [GOOD], tmp_path / "one", val_fraction=0.4, workers=1, show_progress=False)
    prepare(MidiModality(), [GOOD], tmp_path / "two", val_fraction=0.4, workers=2, show_progress=False)
    one, two = open_shards(tmp_path / "one"), open_shards(tmp_path / "two")
    assert np.array_equal(one.train, two.train) and np.array_equal(one.val, two.val)
    files = {tuple(ids_of(remi, p)): p.name for p in GOOD.glob("*.mid")}
    train = [files[d] for d in documents(np.asarray(one.train), remi.separator)]
    val = [files[d] for d in documents(np.asarray(one.val), remi.separator)]  # KeyError: a file was cut
    assert len(val) == 2 and not set(train) & set(val) and sorted(train + val) == sorted(files.values())


def test_bpe_learned_in_workers_gives_the_same_shards(tmp_path: Path) -> None:
    for workers in (1, 2):
        prepare(MidiModality(vocab_size=600), [GOOD], tmp_path / f"w{workers}", val_fraction=0.4, workers=workers, show_progress=False)
    one, two = open_shards(tmp_path / "w1"), open_shards(tmp_path / "w2")
    assert one.modality_spec == two.modality_spec and one.vocab_size == 600
    assert np.array_equal(np.asarray(one.train), np.asarray(two.train)) and np.array_equal(np.asarray(one.val), np.asarray(two.val))


def test_bpe_sample_cap_limits_what_bpe_learns_from(tmp_path: Path) -> None:
    """With room for one file's bytes, BPE learns from one of the three training files only."""
    capped = MidiModality(vocab_size=600, bpe_train_bytes=min(p.stat().st_size for p in GOOD.glob("*.mid")))
    prepare(capped, [GOOD], tmp_path / "capped", val_fraction=0.4, workers=1, show_progress=False)
    prepare(MidiModality(vocab_size=600), [GOOD], tmp_path / "all", val_fraction=0.4, workers=1, show_progress=False)
    assert open_shards(tmp_path / "capped").modality_spec != open_shards(tmp_path / "all").modality_spec


# -- writing -----------------------------------------------------------------------------------
@pytest.mark.parametrize("fixture", ["remi", "remi_bpe"])
def test_write_of_random_ids_gives_a_valid_midi(fixture: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    modality = request.getfixturevalue(fixture)
    rng = np.random.default_rng(0)
    total = 0
    for i in range(10):
        ids = rng.integers(0, modality.vocab_size, 400).tolist()
        modality.write(ids, tmp_path / f"junk{i}.mid")
        total += sum(len(inst.notes) for inst in pretty_midi.PrettyMIDI(str(tmp_path / f"junk{i}.mid")).instruments)
    assert total > 0  # junk still yields some decodable notes


def test_write_falls_back_to_the_longest_decodable_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    modality = MidiModality()
    ids = ids_of(modality, MULTITRACK)
    real_decode = modality._tok.decode
    modality.write(ids[:101], tmp_path / "prefix.mid")

    def fragile(tokens: list[int]) -> object:  # a decoder that chokes on a bad token at index 100
        if len(tokens) > 100:
            raise IndexError("bad token")
        return real_decode(tokens)

    monkeypatch.setattr(modality._tok, "decode", fragile)
    modality.write(ids, tmp_path / "fallback.mid")
    assert notes_by_voice(tmp_path / "fallback.mid") == notes_by_voice(tmp_path / "prefix.mid")
    assert notes_by_voice(tmp_path / "fallback.mid")[0]


def test_write_keeps_the_first_piece_and_drops_special_tokens(remi: MidiModality, tmp_path: Path) -> None:
    tune, other = ids_of(remi, TUNES[0]), ids_of(remi, TUNES[1])
    padded = [0, 0, *tune[:50], 3, *tune[50:], *other]  # PAD, MASK inside, then the next piece
    remi.write(padded, tmp_path / "a.mid")
    remi.write(tune, tmp_path / "b.mid")
    assert notes_by_voice(tmp_path / "a.mid") == notes_by_voice(tmp_path / "b.mid")


def test_write_of_nothing_is_a_valid_empty_file(remi: MidiModality, tmp_path: Path) -> None:
    remi.write([remi.separator], tmp_path / "empty.mid")
    assert pretty_midi.PrettyMIDI(str(tmp_path / "empty.mid")).instruments == []
    remi.write([remi.separator], tmp_path / "empty.wav")
    with wave.open(str(tmp_path / "empty.wav")) as f:
        assert np.all(np.frombuffer(f.readframes(f.getnframes()), dtype="<i2") == 0)


def test_write_wav_renders_the_music(remi: MidiModality, tmp_path: Path) -> None:
    remi.write(ids_of(remi, TUNES[2]), tmp_path / "tune.wav")
    with wave.open(str(tmp_path / "tune.wav")) as f:
        assert (f.getframerate(), f.getnchannels(), f.getsampwidth()) == (22050, 1, 2)
        audio = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")
    seconds = pretty_midi.PrettyMIDI(str(TUNES[2])).get_end_time()
    assert abs(len(audio) / 22050 - seconds) < 1.5  # pretty_midi adds a short release tail
    assert 0.8 * 32767 < np.abs(audio).max() <= 32767


def test_write_refuses_unknown_extension_and_missing_soundfont(tmp_path: Path) -> None:
    modality = MidiModality(soundfont=str(tmp_path / "missing.sf2"))
    with pytest.raises(WgptError, match=r"use one of \.mid, \.midi, \.wav"):
        modality.write([modality.separator], tmp_path / "song.mp3")
    with pytest.raises(WgptError, match=r"soundfont .* not found"):
        modality.write([modality.separator], tmp_path / "song.wav")
    assert [p.name for p in tmp_path.iterdir()] == ["song.mid"]  # the notes are kept; no half-written .wav


def test_rendering_notes_hours_apart_is_capped_and_keeps_the_whole_mid(remi: MidiModality, tmp_path: Path) -> None:
    from wgpt.modalities.midi import RENDER_LIMIT_S

    pm = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    piano.notes = [pretty_midi.Note(100, 60, 0.0, 0.5), pretty_midi.Note(100, 64, 5 * 3600.0, 5 * 3600.5)]  # five hours apart
    pm.instruments.append(piano)
    pm.write(str(tmp_path / "far.mid"))
    ids = remi.encode_file(tmp_path / "far.mid")
    written = remi.write(ids, tmp_path / "out.wav")
    assert written == [tmp_path / "out.mid", tmp_path / "out.wav"]
    with wave.open(str(tmp_path / "out.wav")) as f:
        assert f.getnframes() <= (RENDER_LIMIT_S + 2) * f.getframerate()  # not 5 hours (800 MB)
    assert pretty_midi.PrettyMIDI(str(tmp_path / "out.mid")).get_end_time() > 3600  # the .mid keeps every note


# -- lengths (sample --seconds / --bars) ----------------------------------------------------------
def onsets_before(path: Path, limit: float) -> list[tuple[int, float]]:
    """(pitch, onset) of every note of ``path`` starting at or before ``limit`` seconds, by pretty_midi."""
    pm = pretty_midi.PrettyMIDI(str(path))
    return sorted((n.pitch, round(n.start, 3)) for inst in pm.instruments for n in inst.notes if n.start <= limit + 1e-6)


@pytest.mark.parametrize("fixture", ["remi", "remi_bpe"])
@pytest.mark.parametrize("path", TUNES[:2], ids=lambda p: p.stem)
def test_a_cut_in_seconds_or_bars_keeps_exactly_the_notes_that_start_within_it(
    fixture: str, path: Path, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    modality = request.getfixturevalue(fixture)
    ids = ids_of(modality, path)
    full = modality.write(ids, tmp_path / "full.mid")[0]  # the tune on REMI's grid: the reference
    whole, ended = modality.length(ids, "second")
    assert not ended and whole == pytest.approx(max(start for _, start in onsets_before(full, 1e9)), abs=1e-3)  # the last onset
    downbeats = pretty_midi.PrettyMIDI(str(full)).get_downbeats()
    for unit, amount, limit in (("second", 5.3, 5.3), ("bar", 3, downbeats[3] - 1e-3)):
        cut = modality.cut(ids, unit, amount)
        assert cut == ids[: len(cut)] and modality.length(cut, unit)[0] <= amount < modality.length(ids[: len(cut) + 1], unit)[0]
        modality.write(cut, tmp_path / "cut.mid")
        assert onsets_before(tmp_path / "cut.mid", 1e9) == onsets_before(full, limit)


def test_a_piece_is_ended_by_a_bound_after_its_notes(remi: MidiModality) -> None:
    ids = ids_of(remi, TUNES[0])
    eos = remi._tok.vocab["EOS_None"]
    assert remi.length([*ids, eos], "bar") == (remi.length(ids, "bar")[0], True)
    assert remi.length([*ids, remi.separator, *ids[1:20]], "second")[1]
    assert remi.length([remi.separator], "second") == (0.0, False)  # nothing yet: not ended
    rule = remi.next_token_rule("bar")
    assert remi.next_token_rule() is None and not rule(ids, 10)[[eos, remi.separator]].any() and rule(ids, 10).sum() == remi.vocab_size - 4


# -- prompts -----------------------------------------------------------------------------------
def test_prompts_come_from_files(remi: MidiModality) -> None:
    assert remi.encode_prompt(None, None) == [remi.separator]
    assert remi.encode_prompt(None, TUNES[0]) == ids_of(remi, TUNES[0])
    with pytest.raises(WgptError, match=r"--prompt-file song\.mid"):
        remi.encode_prompt("C major please", None)
    with pytest.raises(WgptError, match=r"prompt file .*truncated or corrupt"):
        remi.encode_prompt(None, BROKEN / "truncated.mid")


# -- statistics --------------------------------------------------------------------------------
def test_statistics_of_the_multitrack_piece_match_its_score(remi: MidiModality) -> None:
    stats = remi.statistics([ids_of(remi, MULTITRACK)])
    pm = pretty_midi.PrettyMIDI(str(MULTITRACK))
    pitched = [n.pitch for i in pm.instruments if not i.is_drum for n in i.notes]
    assert stats["pitch_range"] == 50 == max(pitched) - min(pitched)  # bass F1 (29) to melody G5 (79)
    assert stats["mean_pitch"] == pytest.approx(np.mean(pitched))
    assert stats["notes_per_second"] == pytest.approx(84 / 7.9375)
    # per bar: 9.75 note-beats over the 3.75 beats where something sounds (see make_fixtures.py)
    assert stats["polyphony"] == pytest.approx(9.75 / 3.75, abs=0.05)
    histogram = np.bincount(np.array(pitched) % 12, minlength=12) / len(pitched)
    assert stats["pitch_class_histogram"] == pytest.approx(histogram.tolist())
    assert stats["nonempty_fraction"] == 1.0


def test_statistics_split_sequences_into_pieces(remi: MidiModality) -> None:
    a, b = ids_of(remi, TUNES[0]), ids_of(remi, MULTITRACK)
    together, apart = remi.statistics([a + b]), remi.statistics([a, b])
    histogram = together.pop("pitch_class_histogram")
    assert histogram == pytest.approx(apart.pop("pitch_class_histogram")) and together == pytest.approx(apart)
    single = [remi.statistics([a])["pitch_range"], remi.statistics([b])["pitch_range"]]
    assert apart["pitch_range"] == pytest.approx(np.mean(single))
    assert sum(histogram) == pytest.approx(1.0) and len(histogram) == 12


def test_statistics_of_empty_output_are_zero_not_nan(remi: MidiModality) -> None:
    stats = remi.statistics([[remi.separator], [remi.separator, 0, 0]])
    assert stats["nonempty_fraction"] == 0.0 and stats["pitch_class_histogram"] == [0.0] * 12
    assert all(np.isfinite(v) for k, v in stats.items() if k != "pitch_class_histogram")


def test_statistics_of_junk_are_finite(remi_bpe: MidiModality) -> None:
    junk = np.random.default_rng(1).integers(0, remi_bpe.vocab_size, (8, 256)).tolist()
    stats = remi_bpe.statistics(junk)
    assert 0.0 < stats["nonempty_fraction"] <= 1.0 and sum(stats["pitch_class_histogram"]) == pytest.approx(1.0)
    assert all(np.isfinite(v) for k, v in stats.items() if k != "pitch_class_histogram")


def test_the_private_miditok_members_wgpt_relies_on_are_there(remi_bpe: MidiModality) -> None:
    """wgpt/modalities/midi.py reaches into MidiTok: encoding cached chunks without re-parsing, and
    rebuilding a trained tokenizer from a dict. A MidiTok release that renames these fails here,
    by name, rather than deep in a preparation (pyproject.toml bounds the version too)."""
    import miditok

    tok = remi_bpe._tok
    for member in ("_ids_to_bytes", "_model", "_vocab_base_byte_to_token", "is_trained"):
        assert hasattr(tok, member), member
    assert callable(getattr(miditok.MusicTokenizer, "_MusicTokenizer__create_vocab_learned_bytes_to_tokens", None))
    assert tok.is_trained and hasattr(tok._model, "encode")
