from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wgpt.errors import WgptError
from wgpt.modalities import SkipFile, modality_from_spec
from wgpt.modalities.text import TextModality


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_bytes_round_trip_any_unicode(text):
    m = TextModality("bytes")
    ids, units = m.tokenize(text)
    assert m.decode(ids.tolist()) == text
    assert units == {"byte": len(text.encode("utf-8")), "char": len(text)}
    assert ids.size == 0 or ids.max() < 256


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1))
def test_chars_round_trip_after_fitting(text):
    m = TextModality("chars")
    m.fit([text])
    ids, _ = m.tokenize(text)
    assert m.decode(ids.tolist()) == text
    assert len(ids) == len(text)


def test_chars_maps_unseen_characters_to_id_zero():
    m = TextModality("chars")
    m.fit(["abc"])
    assert m.tokenize("abz")[0].tolist() == [m.chars.index("a"), m.chars.index("b"), 0]


def test_bpe_round_trip_and_spec(milton):
    m = TextModality("bpe", vocab_size=400)
    m.fit([milton[:50_000]])
    assert m.vocab_size == 400
    text = milton[60_000:62_000]
    ids, units = m.tokenize(text)
    assert m.decode(ids.tolist()) == text
    assert len(ids) < units["byte"] * 0.8  # merges compress English text
    rebuilt = modality_from_spec(m.spec())
    assert rebuilt.tokenize(text)[0].tolist() == ids.tolist()


def test_load_refuses_binary_and_non_utf8(tmp_path: Path):
    (tmp_path / "bin.txt").write_bytes(b"abc\x00\x01\x02")
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    (tmp_path / "empty.txt").write_bytes(b"")
    m = TextModality()
    with pytest.raises(SkipFile, match="binary"):
        m.load(tmp_path / "bin.txt")
    with pytest.raises(SkipFile, match="not UTF-8"):
        m.load(tmp_path / "latin1.txt")
    with pytest.raises(SkipFile, match="empty"):
        m.load(tmp_path / "empty.txt")


def test_split_payload_cuts_at_a_line_and_loses_nothing(milton):
    train, val = TextModality().split_payload(milton[:10_000], 0.1)
    assert train + val == milton[:10_000]
    assert train.endswith("\n")
    assert 0.05 < len(val) / 10_000 < 0.15


def test_unknown_tokenizer_is_a_clear_error():
    with pytest.raises(WgptError, match="choose one of bytes, chars, bpe"):
        TextModality("words")


def test_bytes_ids_are_the_utf8_bytes():
    ids, _ = TextModality().tokenize("é")
    assert ids.tolist() == list("é".encode()) and ids.dtype == np.int64


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 16), st.randoms(use_true_random=False))
def test_utf8_constraint_always_gives_valid_text_of_the_exact_length(n, rnd):
    from wgpt.modalities.text import utf8_allowed

    out = b""
    for i in range(n):
        choices = np.flatnonzero(utf8_allowed(out[-3:], n - i))
        out += bytes([int(rnd.choice(choices))])
    assert len(out) == n
    out.decode("utf-8")  # raises if invalid


@given(st.text(min_size=1, max_size=20))
def test_utf8_constraint_allows_every_valid_continuation(text):
    from wgpt.modalities.text import utf8_allowed

    raw = text.encode("utf-8")
    for i in range(len(raw)):
        assert utf8_allowed(raw[max(0, i - 3) : i], len(raw) - i)[raw[i]], (raw, i)
