from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wgpt.errors import WgptError
from wgpt.modalities import SkipFile, modality_from_spec
from wgpt.modalities.base import Piece
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


def encode_whole(m: TextModality, path: Path) -> np.ndarray:
    return m.encode(Piece(path, *m.plan(path)))[0]


def test_files_that_are_not_utf8_text_are_refused_with_the_reason(tmp_path: Path):
    (tmp_path / "bin.txt").write_bytes(b"abc\x00\x01\x02")
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "bom-only.txt").write_bytes(b"\xef\xbb\xbf")
    m = TextModality()
    with pytest.raises(SkipFile, match="binary"):
        m.plan(tmp_path / "bin.txt")
    with pytest.raises(SkipFile, match=r"not UTF-8 \(invalid byte at offset 3\)"):
        encode_whole(m, tmp_path / "latin1.txt")
    for name in ("empty.txt", "bom-only.txt"):
        with pytest.raises(SkipFile, match="empty"):
            m.plan(tmp_path / name)


def test_a_byte_order_mark_is_not_part_of_the_text(tmp_path: Path):
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbfOf Man")
    assert encode_whole(TextModality(), tmp_path / "bom.txt").tobytes() == b"Of Man"


@pytest.fixture(scope="module")
def milton_bpe(milton) -> TextModality:
    m = TextModality("bpe", vocab_size=600)
    m.fit([milton[:80_000]])
    return m


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.sampled_from(["Of", " Man", "'s", " first", "\n", "\n\n", "  ", "\t", "disobedience,", " 42", " é", "ü", "—", "\r\n"]),
        max_size=300,
    ),
    st.lists(st.integers(0, 2000), max_size=6),
    st.sampled_from(["tiktoken", "tokenizers"]),
)
def test_pieces_cut_at_boundaries_tokenize_as_the_whole_file(milton_bpe, tmp_path_factory, words, positions, encoder):
    """The cut rule keeps BPE exact: the ids of the pieces, end to end, are the ids of the whole text."""
    path = tmp_path_factory.mktemp("cut") / "t.txt"
    raw = "".join(words).encode("utf-8")
    path.write_bytes(raw)
    m = modality_from_spec({**milton_bpe.spec(), "encoder": encoder})
    cuts = sorted({m.boundary(path, p) for p in positions if p < len(raw)} - {0, len(raw)})
    assert all(b > 0 and raw[b - 1 : b + 1].isascii() for b in cuts)  # never inside a character
    spans = list(zip([0, *cuts], [*cuts, len(raw)], strict=True))
    pieced = np.concatenate([m.encode(Piece(path, a, b, whole=False))[0] for a, b in spans]) if raw else np.zeros(0)
    assert pieced.tolist() == m.tokenize(raw.decode())[0].tolist()


def test_cuts_prefer_the_start_of_a_line(tmp_path: Path):
    raw = "".join(f"line {i} of the poem\n" for i in range(2000)).encode()
    (tmp_path / "m.txt").write_bytes(raw)
    for position in (1, 5000, 12_345):
        cut = TextModality().boundary(tmp_path / "m.txt", position)
        assert cut >= position and raw[cut - 1 : cut] == b"\n"
        assert b"\n" not in raw[position : cut - 1]  # the first line start at or after the position


def test_lines_ending_in_spaces_are_cut_before_the_whitespace(milton, tmp_path: Path):
    """Milton's lines end in " \n": a cut after the newline would split a whitespace run, which BPE
    reads as one token, so the cut goes before the run instead."""
    (tmp_path / "m.txt").write_text(milton[:20_000], encoding="utf-8")
    raw = (tmp_path / "m.txt").read_bytes()
    cut = TextModality().boundary(tmp_path / "m.txt", 5000)
    assert raw[cut - 1 : cut] not in (b" ", b"\n") and raw[cut : cut + 1] in (b" ", b"\n")


def test_unknown_tokenizer_is_a_clear_error():
    with pytest.raises(WgptError, match="choose one of bytes, chars, bpe"):
        TextModality("words")


def test_bytes_ids_are_the_utf8_bytes_never_widened():
    ids, _ = TextModality().tokenize("é")
    assert ids.tolist() == list("é".encode()) and ids.dtype == np.uint8


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


def test_unit_counts_read_as_people_count_them():
    """The prepare summary's units: durations in hours (audio and MIDI count seconds), the rest as counts."""
    from wgpt.modalities.base import describe_units

    assert describe_units({"sample": 16000, "second": 5400}) == "16,000 samples, 1.50 hours"
    assert describe_units({"byte": 1200, "char": 1180}) == "1,200 bytes, 1,180 chars"
