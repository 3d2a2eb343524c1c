"""Report pages opened in headless Chromium: nothing fetched, no console error, players that play, drawings drawn.

Skipped when no Chromium is installed (``.ci/run`` installs Debian's ``chromium``).
"""

from __future__ import annotations

import io
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from chromium import Browser, find_chromium

from wgpt.benchmark import bench
from wgpt.modalities import modality_class
from wgpt.modalities.text import TextModality
from wgpt.preparation import prepare
from wgpt.report import ReportOptions, SampleOptions, write_report
from wgpt.report.media import BYTES_PER_MINUTE
from wgpt.training import train

BINARY = find_chromium()
pytestmark = pytest.mark.skipif(BINARY is None, reason="no chromium installed (apt-get install chromium)")
ASSETS = Path(__file__).parent / "assets"

# What a page may weigh besides its audio: styles, tables, curves, and per player a waveform and a
# spectrogram (tens of kB at most). A page over this is carrying something it should not.
FIXED_BYTES, PER_PLAYER_BYTES = 150_000, 40_000

DURATIONS = """Promise.all([...document.querySelectorAll('audio')].map(a => a.readyState >= 1 ? a.duration :
  new Promise(done => { a.addEventListener('loadedmetadata', () => done(a.duration)); a.addEventListener('error', () => done(-1));
  setTimeout(() => done(0), 10000); })))"""
PLAYED = """Promise.all([...document.querySelectorAll('audio')].map(a => a.play()
  .then(() => new Promise(done => setTimeout(() => { a.pause(); done(a.currentTime); }, 400))).catch(e => String(e))))"""
BOXES = """[...document.querySelectorAll(%r)].map(e => { const r = e.getBoundingClientRect();
  return [r.left + scrollX, r.top + scrollY, r.width, r.height]; })"""


@pytest.fixture(scope="module")
def pages(tmp_path_factory, milton: str, tiny_model_module, tiny_train_module) -> dict[str, Path]:
    """A text bench's own report and its report with samples, and one page of a MIDI and an audio run."""
    root = tmp_path_factory.mktemp("report")
    (root / "corpus").mkdir()
    (root / "corpus" / "milton.txt").write_text(milton[:60_000], encoding="utf-8")
    prepare(TextModality(), [root / "corpus"], root / "text", workers=1, show_progress=False)
    bench(root / "text", root / "bench", tiny_model_module, tiny_train_module, ["baseline", "haar"], [1], show_progress=False)
    prepare(modality_class("midi")(), [ASSETS / "midi" / "good"], root / "midi", workers=1, show_progress=False)
    prepare(modality_class("audio")(sample_rate=8000), [ASSETS / "audio" / "speech.flac"], root / "audio", workers=1, show_progress=False)
    for name in ("midi", "audio"):
        train(root / name, root / f"run-{name}", tiny_model_module, replace(tiny_train_module, keep_every=6), show_progress=False)
    samples = SampleOptions(count=1, tokens=120, device="cpu")
    write_report([root / "bench"], root / "bench-samples.html", ReportOptions(samples, eval_tokens=2000))
    music = ReportOptions(replace(samples, tokens=200, seconds=0.15, every=6), eval_tokens=2000)  # audio runs take the seconds
    write_report([root / "run-midi", root / "run-audio"], root / "music.html", music)
    return {"bench": root / "bench" / "report.html", "bench-samples": root / "bench-samples.html", "music": root / "music.html"}


@pytest.fixture(scope="module")
def tiny_model_module():
    from wgpt.config import ModelConfig

    return ModelConfig(n_layer=2, n_head=2, d_model=32, d_ff=64, context=32)


@pytest.fixture(scope="module")
def tiny_train_module():
    from wgpt.config import TrainConfig

    return TrainConfig(steps=12, batch_size=4, lr=3e-3, warmup=2, eval_interval=4, eval_batches=2, device="cpu")


@pytest.fixture(scope="module")
def browser():
    chrome = Browser(BINARY)
    yield chrome
    chrome.close()


def ink(png: bytes, box: list[float]) -> float:
    """Share of a screenshot region's pixels that differ clearly from its most common colour."""
    from PIL import Image

    x, y, w, h = (round(v) for v in box)
    region = np.asarray(Image.open(io.BytesIO(png)).convert("RGB").crop((x, y, x + w, y + h)), dtype=np.int16).reshape(-1, 3)
    colours, counts = np.unique(region, axis=0, return_counts=True)
    background = colours[counts.argmax()]
    return float((np.abs(region - background).sum(axis=1) > 60).mean())


@pytest.mark.parametrize("name", ["bench", "bench-samples", "music"])
def test_the_page_loads_nothing_and_logs_no_error(browser, pages, name):
    browser.open(pages[name])
    assert browser.errors() == []
    outside = [url for url in browser.requests() if not url.startswith(("data:", "file:"))]
    assert outside == []
    assert browser.evaluate("document.querySelectorAll('script').length") == 0


def test_every_player_has_a_duration_and_plays(browser, pages):
    browser.open(pages["music"])
    durations = browser.evaluate(DURATIONS)
    assert len(durations) == 2 * 4  # MIDI and audio: validation, steps 6 and 12, best.pt
    assert all(d > 0 for d in durations), durations
    played = browser.evaluate(PLAYED)
    assert all(isinstance(t, (int, float)) and t > 0 for t in played), played
    assert browser.errors() == []


def test_curves_piano_rolls_waveforms_and_spectrograms_are_drawn(browser, pages):
    browser.open(pages["music"])
    shot = browser.screenshot()
    for selector, count in [("svg.chart", 2), ("svg.pianoroll", 4), ("svg.waveform", 4), ("img.spectrogram", 4)]:
        boxes = browser.evaluate(BOXES % selector)
        assert len(boxes) >= count, selector
        for box in boxes:
            assert box[2] > 100 and box[3] > 30, (selector, box)  # laid out, not collapsed
            assert ink(shot, box) > 0.01, (selector, box)


def test_the_bench_page_marks_where_the_wavelet_reaches_the_baseline(browser, pages):
    html = pages["bench"].read_text()
    assert "<audio" not in html  # the bench writes its page without samples: cheap
    assert "reaches the baseline&#x27;s best" in html and html.count('class="target"') == 2  # on both charts
    browser.open(pages["bench"])
    shot = browser.screenshot()
    for box in browser.evaluate(BOXES % "svg.chart"):
        assert ink(shot, box) > 0.01


def test_the_page_weighs_what_its_audio_does(pages):
    for name in ("music", "bench-samples"):
        html = pages[name].read_text()
        players = re.findall(r'src="data:audio/wav;base64,([^"]+)"', html)
        seconds = sum(float(s) for s in re.findall(r"<p class=note>([\d.]+) s at", html))
        budget = FIXED_BYTES + PER_PLAYER_BYTES * len(players) + BYTES_PER_MINUTE * seconds / 60
        assert len(html.encode()) <= budget, (name, len(html.encode()), budget)
        assert sum(map(len, players)) <= BYTES_PER_MINUTE * seconds / 60 * 1.01  # 16 kHz or less, 16 bits, mono


def test_the_page_fits_a_phone(browser, pages):
    browser.call("Emulation.setDeviceMetricsOverride", session=browser.session, width=390, height=800, deviceScaleFactor=1, mobile=True)
    try:
        browser.open(pages["music"])
        assert browser.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling: cards stack
    finally:
        browser.call(
            "Emulation.setDeviceMetricsOverride", session=browser.session, width=1100, height=900, deviceScaleFactor=1, mobile=False
        )
