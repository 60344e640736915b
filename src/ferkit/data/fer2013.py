"""Reading and writing the FER2013 CSV layout (``emotion,pixels[,Usage]``).

The reader is vectorised: it finds line and field boundaries with NumPy, then decodes the
pixel digits of many rows at once, working in cache-sized chunks (large temporary arrays cost
more in page faults than in arithmetic). When a chunk fails a cheap sanity check, its rows are
re-read one by one to name the exact line and problem.
"""

from __future__ import annotations

import gzip
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ferkit.data.dataset import FACE_SIZE, FER2013_CLASS_NAMES, FER2013_USAGES, FerDataset
from ferkit.utils.errors import DataError
from ferkit.utils.io import atomic_write

try:  # ISA-L decompresses gzip about 3x faster than the standard library; optional.
    from isal.igzip import decompress as _gunzip
except ImportError:  # pragma: no cover - exercised only where isal is missing
    from gzip import decompress as _gunzip

PIXELS_PER_FACE = FACE_SIZE * FACE_SIZE
REQUIRED_COLUMNS = ("emotion", "pixels")
#: Rows decoded per vectorised chunk (about 0.5 MB of text: fits in cache).
ROWS_PER_CHUNK = 64

_SPACE, _COMMA, _NEWLINE, _CARRIAGE_RETURN, _ZERO = 32, 44, 10, 13, 48


def read_text_bytes(path: Path) -> bytes:
    """Return the raw bytes of ``path``, gunzipped when it is gzip-compressed.

    Example:
        >>> import gzip, tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.csv.gz"
        >>> _ = path.write_bytes(gzip.compress(b"emotion,pixels"))
        >>> read_text_bytes(path)
        b'emotion,pixels'
    """
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            # Reads every gzip member (files joined with cat, pigz, bgzip), not only the first.
            return _gunzip(data)
        except Exception as error:  # isal and gzip raise different error types
            raise DataError(f"{path}: not a valid gzip file ({error})") from error
    return data


def _row_error(pixels: bytes) -> str | None:
    """Describe what is wrong with one row's pixel field, or None when it is valid."""
    tokens = pixels.split()
    if len(tokens) != PIXELS_PER_FACE:
        return f"field 'pixels': expected {PIXELS_PER_FACE} values, found {len(tokens)}"
    for position, token in enumerate(tokens, start=1):
        if not token.isdigit():
            shown = token.decode(errors="replace")[:20]
            return f"field 'pixels': value {position} is {shown!r}, not an integer"
        if int(token) > 255:
            return f"field 'pixels': value {position} is {int(token)}, outside 0-255"
    return None


def _decode_pixel_rows(buffer: np.ndarray, row_ends: np.ndarray) -> np.ndarray | None:
    """Decode rows of space-separated digits held back to back in ``buffer``.

    ``buffer`` holds each row's pixel field followed by one space (what lies between fields
    may be more spaces); ``row_ends[r]`` is the offset of row ``r``'s trailing space. Returns uint8
    (row_count, 2304), or None when any check fails (then the caller re-reads row by row to
    name the problem). ``buffer`` is overwritten.
    """
    # All arithmetic is uint8 on shifted slices of the buffer (no wide temporaries: memory
    # traffic is the cost here); one gather then picks the value at each token's last digit.
    digits = buffer - np.uint8(_ZERO)  # wraps non-digits to values >= 10
    is_digit = digits <= 9
    if np.count_nonzero(is_digit) + np.count_nonzero(buffer == _SPACE) != len(buffer):
        return None
    # A token ends where a digit is followed by a non-digit (the buffer ends with a space).
    ends = np.flatnonzero(is_digit[:-1] > is_digit[1:])
    row_count = len(row_ends)
    if len(ends) != row_count * PIXELS_PER_FACE:
        return None
    # Every row must hold exactly 2304 values (a short row next to a long one would otherwise
    # pass the total and shift pixels across rows).
    tokens_before_row_end = np.searchsorted(ends, row_ends)
    if np.any(np.diff(tokens_before_row_end, prepend=0) != PIXELS_PER_FACE):
        return None
    # Four digits in a row can only be a value >= 1000.
    if np.any(is_digit[3:] & is_digit[2:-1] & is_digit[1:-2] & is_digit[:-3]):
        return None
    # value(i) = d[i] + 10 d[i-1] + 100 d[i-2], each term only while still inside the token
    # (spaces count as 0; the hundreds digit only when d[i-1] is a digit too).
    digits *= is_digit
    values = digits.copy()
    values[1:] += digits[:-1] * np.uint8(10)
    hundreds = np.zeros_like(digits)
    np.multiply(digits[:-2], is_digit[1:-1], out=hundreds[2:])
    values += hundreds * np.uint8(100)  # modulo 256: a value over 255 is caught below
    values, hundreds = values[ends], hundreds[ends]
    # True value = 100 h + rest: over 255 when h >= 3, or h == 2 and the rest is over 55,
    # which wraps the uint8 sum below 200.
    if np.any((hundreds > 2) | ((hundreds == 2) & (values < 200))):
        return None
    return values.reshape(row_count, PIXELS_PER_FACE)


def _read_csv_bytes(path: Path) -> bytes:
    """The file's text: checked to exist and hold something, without a BOM or quotes."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a CSV file")
    raw = read_text_bytes(path)
    if raw.startswith(b"\xef\xbb\xbf"):  # UTF-8 byte-order mark from spreadsheet exports
        raw = raw[3:]
    if not raw or raw.isspace():  # (not raw.strip(): that copies the whole text)
        raise DataError(f"{path}: the file is empty")
    if b'"' in raw:  # quoted fields: FER2013 fields never contain commas, so quotes can go
        raw = raw.replace(b'"', b"")
    return raw


def _header_columns(path: Path, raw: bytes) -> list[str]:
    """The header's column names, lower-cased; a DataError when emotion or pixels is missing."""
    header_end = raw.find(b"\n")
    header_end = len(raw) if header_end < 0 else header_end
    header = raw[:header_end].decode("utf-8", errors="replace").strip().split(",")
    columns = [name.strip().lower() for name in header]
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise DataError(
            f"{path}: line 1: missing column(s) {', '.join(missing)}; the header is "
            f"{','.join(header)!r}, expected emotion,pixels[,Usage]"
        )
    return columns


class _CsvRows:
    """The data rows of one FER2013 CSV: where each row's fields are, and which rows failed.

    Rows are the non-blank lines after the header; ``line_numbers`` keeps their 1-based line
    numbers for messages. ``fail`` marks a row bad (its first problem is the one reported).
    """

    def __init__(self, path: Path, raw: bytes, field_count: int):
        self.raw, self.field_count = raw, field_count
        self.data = data = np.frombuffer(raw, dtype=np.uint8)
        # Line boundaries and commas: few positions, so one pass each over the text is cheap
        # when done in chunks.
        newlines, commas = [], []
        chunk = 1 << 22
        for start in range(0, len(data), chunk):
            piece = data[start : start + chunk]
            newlines.append(np.flatnonzero(piece == _NEWLINE) + start)
            commas.append(np.flatnonzero(piece == _COMMA) + start)
        newline_positions = np.concatenate(newlines)
        comma_positions = np.concatenate(commas)
        line_starts = np.concatenate([[0], newline_positions + 1])
        line_ends = np.concatenate([newline_positions, [len(data)]])
        # Strip a CR before each LF (CRLF files).
        has_cr = (line_ends > line_starts) & (
            data[np.maximum(line_ends - 1, 0)] == _CARRIAGE_RETURN
        )
        line_ends = line_ends - has_cr
        # Drop the header; keep 1-based line numbers for messages.
        line_numbers = np.arange(2, len(line_starts) + 1)
        line_starts, line_ends = line_starts[1:], line_ends[1:]
        nonblank = line_ends > line_starts
        self.line_starts, self.line_ends, self.line_numbers = (
            line_starts[nonblank],
            line_ends[nonblank],
            line_numbers[nonblank],
        )
        if len(self.line_starts) == 0:
            raise DataError(f"{path}: the file has a header but no rows")

        # Field boundaries per line from the comma positions (vectorised over all rows).
        self.first_comma_index = np.searchsorted(comma_positions, self.line_starts)
        self.commas_per_line = (
            np.searchsorted(comma_positions, self.line_ends) - self.first_comma_index
        )
        self.shape_ok = self.commas_per_line == field_count - 1
        self.padded_commas = np.concatenate([comma_positions, [len(data)] * field_count])
        self.count = len(self.line_starts)
        self.keep = np.ones(self.count, dtype=bool)
        self.problems: dict[int, str] = {}

    def field_spans(self, column: int) -> tuple[np.ndarray, np.ndarray]:
        """Each row's start and end offsets of field ``column`` (meaningful where shape_ok)."""
        if column == 0:
            starts = self.line_starts
        else:
            starts = self.padded_commas[self.first_comma_index + column - 1] + 1
        if column == self.field_count - 1:
            ends = self.line_ends
        else:
            ends = self.padded_commas[self.first_comma_index + column]
        return starts, ends

    def fail(self, row: int, message: str) -> None:
        self.keep[row] = False
        self.problems.setdefault(row, message)


def _read_labels(rows: _CsvRows, column: int, class_names) -> np.ndarray:
    """The emotion labels (-1 where bad); rows with the wrong field count fail here too."""
    data, raw = rows.data, rows.raw
    label_starts, label_ends = rows.field_spans(column)
    labels = np.full(rows.count, -1, dtype=np.int64)
    single_digit = rows.shape_ok & (label_ends - label_starts == 1)
    single_digit_values = data[np.minimum(label_starts, len(data) - 1)].astype(np.int64) - _ZERO
    single_digit &= (single_digit_values >= 0) & (single_digit_values < len(class_names))
    labels[single_digit] = single_digit_values[single_digit]
    for row in np.flatnonzero(~single_digit):  # the rare cases, one by one
        if not rows.shape_ok[row]:
            rows.fail(
                row, f"expected {rows.field_count} fields, found {rows.commas_per_line[row] + 1}"
            )
            continue
        label_text = raw[label_starts[row] : label_ends[row]].strip()
        if label_text.isdigit() and int(label_text) < len(class_names):
            labels[row] = int(label_text)
        else:
            rows.fail(
                row,
                f"field 'emotion': {label_text.decode(errors='replace')!r} is not a known "
                f"label (expected an integer 0-{len(class_names) - 1})",
            )
    return labels


def _decode_pixel_chunk(
    rows: _CsvRows, chunk: np.ndarray, spans, images: np.ndarray
) -> list[tuple[int, str]]:
    """Decode the pixel fields of the still-good rows in ``chunk`` into ``images``.

    Returns the (row, problem) pairs of the rows that could not be decoded.
    """
    data, raw = rows.data, rows.raw
    chunk = chunk[rows.keep[chunk]]
    if len(chunk) == 0:
        return []
    starts, ends = spans[0][chunk], spans[1][chunk]
    # The text from the chunk's first pixel field to its last, with what lies between one
    # row's pixels and the next's (other fields, line breaks) blanked: one copy, no
    # per-row Python loop.
    first = starts[0]
    buffer = np.empty(int(ends[-1] - first) + 1, dtype=np.uint8)
    buffer[:-1] = data[first : ends[-1]]
    buffer[-1] = _SPACE
    gap_starts, gap_lengths = ends[:-1] - first, starts[1:] - ends[:-1]
    gap_offsets = np.cumsum(gap_lengths) - gap_lengths
    buffer[np.repeat(gap_starts - gap_offsets, gap_lengths) + np.arange(int(gap_lengths.sum()))] = (
        _SPACE
    )
    decoded = _decode_pixel_rows(buffer, ends - first)
    if decoded is not None:
        images[chunk] = decoded
        return []
    found = []  # slow path: find and describe the bad rows
    for row, start, end in zip(chunk.tolist(), starts.tolist(), ends.tolist()):
        problem = _row_error(raw[start:end])
        if problem is None:
            images[row] = np.array(raw[start:end].split(), dtype=np.uint8)
        else:
            found.append((row, problem))
    return found


def _read_pixels(rows: _CsvRows, column: int) -> np.ndarray:
    """The faces' pixels, uint8 (rows, 2304), decoded in chunks on a few threads."""
    spans = rows.field_spans(column)
    images = np.zeros((rows.count, PIXELS_PER_FACE), dtype=np.uint8)
    chunks = [
        np.arange(first, min(first + ROWS_PER_CHUNK, rows.count))
        for first in range(0, rows.count, ROWS_PER_CHUNK)
    ]

    def decode(chunk: np.ndarray) -> list[tuple[int, str]]:
        return _decode_pixel_chunk(rows, chunk, spans, images)

    # NumPy releases the GIL in its element-wise loops, so threads decode chunks in parallel.
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        chunk_problems = [problem for found in pool.map(decode, chunks) for problem in found]
    for row, message in sorted(chunk_problems):
        rows.fail(row, message)
    return images


def _read_usage(rows: _CsvRows, column: int) -> list[str]:
    """Each row's Usage; rows with a usage other than FER2013's three fail."""
    usage_starts, usage_ends = rows.field_spans(column)
    names: dict[bytes, str] = {}
    usage = []
    for start, end in zip(usage_starts.tolist(), usage_ends.tolist()):
        field_bytes = rows.raw[start:end]
        name = names.get(field_bytes)
        if name is None:
            name = names[field_bytes] = field_bytes.strip().decode(errors="replace")
        usage.append(name)
    allowed = set(FER2013_USAGES)
    for name in set(names.values()) - allowed:
        for row in np.flatnonzero(np.array(usage) == name):
            rows.fail(
                int(row),
                f"field 'Usage': {name!r} is not one of {', '.join(FER2013_USAGES)}",
            )
    return usage


def parse_fer2013_csv(
    path: str | os.PathLike, skip_bad_rows: bool = False, class_names=FER2013_CLASS_NAMES
) -> FerDataset:
    """Parse a FER2013-layout CSV (plain or gzip, LF or CRLF) without any cache.

    Args:
        path: the CSV file.
        skip_bad_rows: skip invalid rows (described in ``skipped``) instead of failing.
        class_names: names of the label indices; labels outside ``range(len(class_names))``
            are invalid.

    Returns:
        A :class:`FerDataset`.

    Raises:
        DataError: naming the file, the 1-based line and what is wrong.

    Example:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "one.csv"
        >>> _ = f.write_text("emotion,pixels\\n3," + " ".join(["7"] * 2304) + "\\n")
        >>> ds = parse_fer2013_csv(f)
        >>> len(ds), int(ds.labels[0]), int(ds.images[0, 0, 0])
        (1, 3, 7)
    """
    path = Path(path)
    raw = _read_csv_bytes(path)
    columns = _header_columns(path, raw)
    rows = _CsvRows(path, raw, field_count=len(columns))
    labels = _read_labels(rows, columns.index("emotion"), class_names)
    images = _read_pixels(rows, columns.index("pixels"))
    usage = _read_usage(rows, columns.index("usage")) if "usage" in columns else None
    problems, keep = rows.problems, rows.keep
    if problems and not skip_bad_rows:
        # Report the first bad line, and how many more there are.
        first = min(problems)
        more = f" (and {len(problems) - 1} more bad rows)" if len(problems) > 1 else ""
        raise DataError(f"{path}: line {int(rows.line_numbers[first])}: {problems[first]}{more}")
    skipped = [f"line {int(rows.line_numbers[row])}: {problems[row]}" for row in sorted(problems)]
    usage_array = None
    if usage is not None:
        usage_array = np.array(usage)[keep]
    if not keep.any():
        raise DataError(f"{path}: no valid rows (skipped {len(skipped)} bad rows)")
    return FerDataset(
        images=images[keep].reshape(-1, FACE_SIZE, FACE_SIZE),
        labels=labels[keep],
        class_names=tuple(class_names),
        usage=usage_array,
        source=str(path),
        skipped=skipped,
    )


def save_fer2013_csv(dataset: FerDataset, path: str | os.PathLike) -> Path:
    """Write ``dataset`` as a FER2013-layout CSV (``.gz`` suffix → gzip), atomically.

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> ds = FerDataset(np.full((1, 48, 48), 9, np.uint8), np.array([5]))
        >>> out = save_fer2013_csv(ds, pathlib.Path(tempfile.mkdtemp()) / "x.csv")
        >>> out.read_text().splitlines()[0]
        'emotion,pixels'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    has_usage = dataset.usage is not None
    lines = ["emotion,pixels,Usage" if has_usage else "emotion,pixels"]
    flat = dataset.images.reshape(len(dataset), -1)
    for index in range(len(dataset)):
        pixels = " ".join(map(str, flat[index].tolist()))
        line = f"{int(dataset.labels[index])},{pixels}"
        if has_usage:
            line += f",{dataset.usage[index]}"
        lines.append(line)
    text = ("\n".join(lines) + "\n").encode()

    def write(temporary: str) -> None:
        with open(temporary, "wb") as handle:
            if path.suffix == ".gz":
                with gzip.GzipFile(fileobj=handle, mode="wb", mtime=0) as compressed:
                    compressed.write(text)
            else:
                handle.write(text)

    atomic_write(path, write)
    return path
