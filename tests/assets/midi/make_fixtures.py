"""Regenerate the synthetic MIDI fixtures beside this file (run once; the outputs are committed).

good/multitrack.mid: piano, bass and drums for 4 bars of 4/4 at 120 qpm, every onset and
duration on a 1/8-beat grid so that REMI-style tokenizers (8 positions per beat) keep them exactly.
broken/: the files `wgpt prepare midi` must skip, each for a different reason.
The good/oneills1850-*.mid tunes are public-domain O'Neill (1850) tunes converted with abc2midi.

Usage: python tests/assets/midi/make_fixtures.py
"""

from __future__ import annotations

from pathlib import Path

import pretty_midi

HERE = Path(__file__).parent
BEAT = 0.5  # seconds per quarter note at 120 qpm


def _note(inst: pretty_midi.Instrument, pitch: int, beat: float, beats: float, velocity: int = 90) -> None:
    inst.notes.append(pretty_midi.Note(velocity, pitch, beat * BEAT, (beat + beats) * BEAT))


def multitrack() -> pretty_midi.PrettyMIDI:
    """Chords and a melody on piano, a walking bass and a rock beat: three programs incl. drums."""
    pm = pretty_midi.PrettyMIDI(resolution=480, initial_tempo=120.0)
    piano = pretty_midi.Instrument(program=0, name="piano")
    bass = pretty_midi.Instrument(program=33, name="bass")
    drums = pretty_midi.Instrument(program=0, is_drum=True, name="drums")
    chords = [(60, 64, 67), (57, 60, 64), (53, 57, 60), (55, 59, 62)]  # C Am F G
    melody = [72, 74, 76, 79, 77, 76, 74, 72]
    for bar, chord in enumerate(chords):
        start = 4 * bar
        for pitch in chord:
            _note(piano, pitch, start, 2.0, 70)
        for i in range(2):
            _note(piano, melody[(2 * bar + i) % len(melody)], start + 2 + i, 0.875, 100)
        for i, step in enumerate((0, 7, 12, 7)):
            _note(bass, chord[0] - 24 + step, start + i, 0.5, 85)
        for i in range(8):
            _note(drums, 42, start + 0.5 * i, 0.125, 60)  # closed hi-hat on eighths
        _note(drums, 36, start, 0.25)
        _note(drums, 38, start + 1, 0.25)
        _note(drums, 36, start + 2.5, 0.25)
        _note(drums, 38, start + 3, 0.25)
    pm.instruments.extend([piano, bass, drums])
    return pm


def no_notes() -> pretty_midi.PrettyMIDI:
    """A well-formed file with a tempo and an instrument track but not a single note."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=100.0)
    pm.instruments.append(pretty_midi.Instrument(program=40, name="silent violin"))
    return pm


def main() -> None:
    multitrack().write(str(HERE / "good" / "multitrack.mid"))
    broken = HERE / "broken"
    broken.mkdir(exist_ok=True)
    no_notes().write(str(broken / "no_notes.mid"))
    tune = (HERE / "good" / "oneills1850-0201-0300259.mid").read_bytes()
    (broken / "truncated.mid").write_bytes(tune[: len(tune) // 2])
    (broken / "empty.mid").write_bytes(b"")
    (broken / "not_midi.mid").write_text("X:1\nT:The Sixpence\nK:G\nGABc d2 e2|\n", encoding="utf-8")


if __name__ == "__main__":
    main()
