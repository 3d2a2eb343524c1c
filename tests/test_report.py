"""The report's builders (curves, piano roll, waveform, spectrogram, validation slices) and the page itself."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from wgpt.benchmark import BenchRun, summarise
from wgpt.cli import app
from wgpt.errors import WgptError
from wgpt.modalities.text import TextModality
from wgpt.preparation import prepare
from wgpt.report import ReportOptions, SampleOptions, build_report
from wgpt.report.media import SPECTROGRAM_COLUMNS, spectrogram, spectrogram_png, wav_bytes
from wgpt.report.page import card, config_table, curves_section, page
from wgpt.report.samples import View, checkpoints_to_sample, read_notes, sample_run, validation_slices
from wgpt.report.sources import Bench, Run
from wgpt.report.svg import BOTTOM, HEIGHT, LEFT, RIGHT, ROLL_LEFT, ROLL_ROW, TOP, WIDTH, Chart, Series, line_chart, piano_roll, waveform
from wgpt.training import train

runner = CliRunner()


def attrs(svg: str, tag: str, cls: str) -> list[dict[str, str]]:
    """The attributes of every ``<tag class="cls" ...>`` in ``svg``."""
    found = re.findall(rf'<{tag} class="{cls}"([^>]*)>', svg)
    return [dict(re.findall(r'([\w-]+)="([^"]*)"', a)) for a in found]


def points(svg: str) -> list[list[tuple[float, float]]]:
    return [[tuple(map(float, p.split(","))) for p in a["points"].split()] for a in attrs(svg, "polyline", "series")]


# -- curves ---------------------------------------------------------------------------------------
def test_curve_points_land_where_the_metrics_say():
    """Steps 0, 10, 20 with losses 3, 2, 1: x from the left edge to the right, y with the 5% margin."""
    svg = line_chart(Chart([Series("val", [0, 10, 20], [3.0, 2.0, 1.0], "#000")], "step", "loss"))
    (line,) = points(svg)
    xs, ys = [p[0] for p in line], [p[1] for p in line]
    assert xs == pytest.approx([LEFT, (LEFT + WIDTH - RIGHT) / 2, WIDTH - RIGHT], abs=0.06)
    plot_h = HEIGHT - BOTTOM - TOP
    margin = 0.1 / 2.2 * plot_h  # 5% of the loss range of 2, on a span of 2.2
    assert ys == pytest.approx([TOP + margin, TOP + plot_h / 2, HEIGHT - BOTTOM - margin], abs=0.06)


def test_unequal_steps_are_spaced_in_proportion():
    svg = line_chart(Chart([Series("val", [10, 20, 50], [2.0, 1.5, 1.2], "#000")], "step", "loss"))
    (line,) = points(svg)
    x10, x20, x50 = (p[0] for p in line)
    assert (x50 - x20) == pytest.approx(3 * (x20 - x10), abs=0.2)


def test_a_run_of_one_evaluation_shows_its_point():
    svg = line_chart(Chart([Series("one", [10], [2.0], "#123"), Series("two", [10, 20], [2.5, 1.5], "#456")], "step", "loss"))
    assert svg.count('<circle class="point"') == 1 and 'fill="#123"' in svg.split('<circle class="point"')[1]


def bench_of(tmp_path: Path) -> Bench:
    """A baseline and a wavelet run of one seed; the wavelet run reaches the baseline's best (1.8 at step 40)
    halfway between steps 20 and 30, at step 25, and takes 0.6 s a step."""

    def rows(pairs, seconds_per_step):
        return [
            {"step": s, "val_loss": v, "train_loss": v + 0.1, "tokens_per_s": 100.0, "elapsed_s": s * seconds_per_step} for s, v in pairs
        ]

    base = rows([(10, 3.0), (20, 2.5), (30, 2.0), (40, 1.8)], 0.5)
    wave = rows([(10, 2.6), (20, 2.0), (30, 1.6), (40, 1.5)], 0.6)
    summary = summarise(
        [BenchRun("baseline", 1, tmp_path / "b", 10, base), BenchRun("haar", 1, tmp_path / "h", 10, wave)], ["baseline", "haar"], [1]
    )
    runs = [Run("baseline-seed1", tmp_path / "b", base, {}, "baseline", 1), Run("haar-seed1", tmp_path / "h", wave, {}, "haar", 1)]
    return Bench(tmp_path, summary, runs)


def test_the_marker_sits_where_the_variant_reaches_the_baselines_best(tmp_path: Path):
    bench = bench_of(tmp_path)
    (reach,) = bench.reaches()
    assert (reach.target, reach.step, reach.seconds) == (1.8, pytest.approx(25.0), pytest.approx(15.0))
    colors = {id(r): c for r, c in zip(bench.runs, ["#111111", "#222222"], strict=True)}
    html = curves_section(bench.runs, [bench], colors)
    by_step, by_time = html.split("</svg>")[:2]
    wave_val = points(by_step)[2]  # baseline val, baseline train, haar val, haar train
    (marker,) = attrs(by_step, "circle", "marker")
    assert float(marker["cx"]) == pytest.approx((wave_val[1][0] + wave_val[2][0]) / 2, abs=0.1)  # step 25: between 20 and 30
    assert float(marker["cy"]) == pytest.approx(points(by_step)[0][3][1], abs=0.1)  # at the height of the baseline's best
    assert "1.60x" in by_step  # 40 / 25, the speed-up summarise measured
    (time_marker,) = attrs(by_time, "circle", "marker")
    wave_time = points(by_time)[2]  # 6, 12, 18, 24 s: 15 s lies halfway from 12 to 18
    assert float(time_marker["cx"]) == pytest.approx((wave_time[1][0] + wave_time[2][0]) / 2, abs=0.1)


# -- music and sound ------------------------------------------------------------------------------
def test_piano_roll_of_a_known_midi_file(tmp_path: Path):
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    piano, strings = pretty_midi.Instrument(program=0), pretty_midi.Instrument(program=48)
    piano.notes += [pretty_midi.Note(100, 60, 0.0, 0.5), pretty_midi.Note(100, 64, 0.5, 1.0)]
    strings.notes.append(pretty_midi.Note(100, 67, 1.0, 2.0))
    pm.instruments += [piano, strings]
    pm.write(str(tmp_path / "known.mid"))
    notes = sorted(read_notes(tmp_path / "known.mid"), key=lambda n: n.start)
    assert [(n.pitch, n.program) for n in notes] == [(60, 0), (64, 0), (67, 48)]
    rects = attrs(piano_roll(notes), "rect", "note")
    assert len(rects) == 3
    (x1, y1, w1), (x2, y2, w2), (x3, y3, w3) = ((float(r["x"]), float(r["y"]), float(r["width"])) for r in rects)
    assert x1 == pytest.approx(ROLL_LEFT)  # the first note starts at 0 s, the left edge
    assert x2 == pytest.approx(x1 + w1, abs=0.02) and w2 == pytest.approx(w1, abs=0.02)  # back to back, equally long
    assert w3 == pytest.approx(2 * w1, abs=0.02)  # twice as long
    assert x3 + w3 == pytest.approx(WIDTH - 4, abs=0.02)  # the last note ends at the right edge
    assert (y1 - y2, y1 - y3) == (4 * ROLL_ROW, 7 * ROLL_ROW)  # a major third and a fifth higher: rows up
    assert rects[0]["fill"] == rects[1]["fill"] != rects[2]["fill"]  # coloured by instrument


def test_an_empty_piano_roll_says_so():
    assert "no notes" in piano_roll([])


def test_waveform_spans_the_signal_envelope():
    t = np.arange(8000) / 8000
    svg = waveform(0.5 * np.sin(2 * np.pi * 50 * t), width=100, height=80)
    ys = [float(p.split(",")[1]) for p in re.search(r' d="M([^"]*) Z"', svg).group(1).split(" L")]
    assert min(ys) == pytest.approx(20, abs=0.5) and max(ys) == pytest.approx(60, abs=0.5)  # +-0.5 of a +-1 height of 80


def test_spectrogram_puts_a_tone_in_its_frequency_bin():
    rate = 16000
    tone = np.sin(2 * np.pi * 2000 * np.arange(rate) / rate)
    db = spectrogram(tone, rate)
    assert db.shape[1] <= SPECTROGRAM_COLUMNS
    assert int(np.median(db.argmax(axis=0))) == 2000 * 256 // rate  # bin 32 of a 256-point FFT
    assert spectrogram_png(tone, rate)[:8] == b"\x89PNG\r\n\x1a\n"


def test_wav_bytes_hold_the_samples_at_16_bits():
    import io

    import soundfile

    data, rate = soundfile.read(io.BytesIO(wav_bytes(np.array([0.0, 0.5, -0.5, 1.0]), 8000)), dtype="float32")
    assert rate == 8000 and data == pytest.approx([0.0, 0.5, -0.5, 1.0], abs=1e-4)


def test_validation_slices_follow_the_start_id():
    val = np.arange(1000) % 97  # 0 occurs every 97 ids
    val[val == 5] = 6  # and no 5 anywhere
    for ids in validation_slices(val, [0], 10, 3, seed=1):
        assert ids == [1, 2, 3, 4, 6, 6, 7, 8, 9, 10]  # what follows each 0
    unmatched = validation_slices(val, [5], 10, 2, seed=1)
    assert all(len(s) == 10 for s in unmatched)  # anywhere, when the start id never occurs


# -- the page -------------------------------------------------------------------------------------
def test_sample_text_is_shown_not_run():
    html = card("a <b>sample</b>", View(text="<script>alert(1)</script> & more"))
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html
    assert "a &lt;b&gt;sample&lt;/b&gt;" in html


def test_several_runs_show_the_settings_they_differ_in_first():
    a = Run("a", Path("a"), [], {"model": {"n_layer": 4, "wavelet": "none"}, "data": "d"})
    b = Run("b", Path("b"), [], {"model": {"n_layer": 4, "wavelet": "haar"}, "data": "d"})
    shown, folded = config_table([a, b]).split("<details>")
    assert "model.wavelet" in shown and "model.n_layer" not in shown and "data" not in shown
    assert "model.n_layer" in folded and 'class="differs"' in folded
    assert "<details>" not in config_table([a])  # one run: the whole table


def linked(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="?([^" >]+)', html)


@pytest.fixture
def text_run(corpus_dir: Path, tmp_path: Path, tiny_model, tiny_train) -> Path:
    prepare(TextModality(), [corpus_dir], tmp_path / "data", workers=1, show_progress=False)
    train(tmp_path / "data", tmp_path / "run", tiny_model, replace(tiny_train, keep_every=4), show_progress=False)
    return tmp_path / "run"


def test_every_samples_the_kept_steps_at_its_multiples_then_best(text_run: Path):
    assert [label for label, _ in checkpoints_to_sample(text_run, 8)] == ["step 8", "best.pt"]
    assert [label for label, _ in checkpoints_to_sample(text_run, None)] == ["best.pt"]
    with pytest.raises(WgptError, match="kept steps 4, 8, 12"):
        checkpoints_to_sample(text_run, 5)


def test_a_run_page_is_self_contained_with_curves_tables_and_samples(text_run: Path):
    html = build_report([text_run], ReportOptions(SampleOptions(count=2, tokens=40, every=4), eval_tokens=2000))
    assert all(link.startswith(("data:", "#")) for link in linked(html)), linked(html)
    assert "<script" not in html and "http://" not in html.replace(">http://", "")
    assert len(points(html)) == 4  # train and validation, against steps and against time
    assert html.count("<pre class=text>") == 2 * (1 + 4)  # two rows of: validation, steps 4, 8, 12, best.pt
    assert "bits per byte" in html and "files used" in html and "model.n_layer" in html


def test_seconds_on_a_text_run_says_it_took_tokens(text_run: Path, tmp_path: Path):
    said, plain = [], []
    assert sample_run(text_run, SampleOptions(count=1, tokens=12, seconds=2.0), say=said.append).tokens == 12
    sample_run(text_run, SampleOptions(count=1, tokens=12), say=plain.append)
    assert len(said) == 1 and said[0].endswith("1 x 12 tokens (--seconds is for audio runs)"), said
    assert plain == [said[0].removesuffix(" (--seconds is for audio runs)")]


def test_report_command_writes_the_page_and_names_bad_folders(text_run: Path, tmp_path: Path):
    out = tmp_path / "page" / "r.html"
    result = runner.invoke(app, ["report", str(text_run), "--out", str(out), "--tokens", "20", "--eval-tokens", "500", "-q"])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output and out.read_text().startswith("<!doctype html>")
    for args, message in [
        ([str(tmp_path / "nowhere")], "does not exist"),
        ([str(tmp_path / "data")], "is neither a run (no metrics.jsonl) nor a bench"),
        ([str(text_run), "--every", "5"], "no step checkpoints at multiples of 5"),
        ([str(text_run), "--samples", "-1"], "--samples must be 0"),
        ([str(text_run), "--temperature", "0"], "--temperature must be between"),
    ]:
        bad = runner.invoke(app, ["report", *args, "--out", str(tmp_path / "x.html"), "-q"])
        assert bad.exit_code == 2 and message in bad.output, (args, bad.output)
        assert not (tmp_path / "x.html").exists()


def test_the_page_frame_declares_utf8_and_a_phone_viewport():
    html = page("t", "<p>x</p>")
    assert '<meta charset="utf-8">' in html and 'name="viewport"' in html
