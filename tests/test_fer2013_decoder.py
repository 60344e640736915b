"""The vectorised pixel decoder of the FER2013 reader: every value, every out-of-range form."""

from __future__ import annotations

import numpy as np
import pytest

from ferkit.data.fer2013 import PIXELS_PER_FACE, _decode_pixel_rows


def pack(rows: list[list[str]], gap: bytes = b" ") -> tuple[np.ndarray, np.ndarray]:
    """Rows of pixel tokens as the reader packs them: each field, then ``gap`` (spaces)."""
    text, ends = b"", []
    for tokens in rows:
        text += " ".join(tokens).encode()
        ends.append(len(text))
        text += gap
    return np.frombuffer(text, dtype=np.uint8).copy(), np.array(ends)


def test_every_value_and_leading_zeros_decode():
    values = np.arange(PIXELS_PER_FACE * 2) % 256
    rows = [[str(value) for value in values[:PIXELS_PER_FACE]]]
    # zero-padded forms ("007", "08") and a wider gap between rows decode too
    rows.append(
        [f"{value:03d}" if value % 3 else f"{value:02d}"[-3:] for value in values[:PIXELS_PER_FACE]]
    )
    buffer, ends = pack(rows, gap=b"   ")
    decoded = _decode_pixel_rows(buffer, ends)
    assert decoded is not None
    assert decoded.tolist() == [values[:PIXELS_PER_FACE].tolist()] * 2


@pytest.mark.parametrize("bad", ["256", "260", "299", "300", "999", "1000", "0256", "12a", "-5"])
def test_out_of_range_or_malformed_values_are_refused(bad):
    # None sends the chunk to the row-by-row reader, which names the value (test_data.py).
    tokens = ["255"] * PIXELS_PER_FACE
    tokens[7] = bad
    buffer, ends = pack([["0"] * PIXELS_PER_FACE, tokens])
    assert _decode_pixel_rows(buffer, ends) is None


def test_200_to_255_are_values_not_overflows():
    tokens = [str(200 + index % 56) for index in range(PIXELS_PER_FACE)]
    buffer, ends = pack([tokens])
    assert _decode_pixel_rows(buffer, ends).ravel().tolist() == [int(t) for t in tokens]


def test_a_short_row_next_to_a_long_one_is_refused():
    buffer, ends = pack([["1"] * (PIXELS_PER_FACE - 1), ["1"] * (PIXELS_PER_FACE + 1)])
    assert _decode_pixel_rows(buffer, ends) is None
