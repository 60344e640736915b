"""Tests for ferkit.data: FER2013 CSVs, the parsed-dataset cache, image folders and splits."""

from __future__ import annotations

import gzip
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ferkit.data
from ferkit.data import (
    FER2013_CLASS_NAMES,
    FerDataset,
    load_fer2013,
    load_image_folder,
    parse_fer2013_csv,
    save_fer2013_csv,
    split_dataset,
    stratified_folds,
    write_synthetic_csv,
)
from ferkit.data.cache import default_cache_dir
from ferkit.data.preprocessing import read_image, to_face_array
from ferkit.data.synth import make_synthetic_dataset
from ferkit.utils.errors import DataError, FerkitError

NUM_CLASSES = len(FER2013_CLASS_NAMES)
ROW_COUNT = 14
SHARED_FER2013 = Path(__file__).resolve().parents[2] / "shared/data/fer2013-train-publictest.csv.gz"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """Every test gets its own cache directory, so nothing lands in the user's ~/.cache."""
    directory = tmp_path / "ferkit-cache"
    monkeypatch.setenv("FERKIT_CACHE_DIR", str(directory))
    return directory


@pytest.fixture(scope="module")
def faces() -> FerDataset:
    """14 synthetic faces (2 per class) with all three Usage values present."""
    synthetic = make_synthetic_dataset(n=ROW_COUNT, seed=0)
    usage = np.resize(np.array(["Training", "PublicTest", "PrivateTest"]), ROW_COUNT)
    return FerDataset(synthetic.images, synthetic.labels, usage=usage)


@pytest.fixture
def csv_path(tmp_path, faces) -> Path:
    """The 14 faces as a plain FER2013 CSV (header on line 1, face i on line i + 2)."""
    return save_fer2013_csv(faces, tmp_path / "data" / "faces.csv")


def assert_same_dataset(actual: FerDataset, expected: FerDataset) -> None:
    assert actual.images.dtype == np.uint8
    assert actual.images.shape == expected.images.shape
    np.testing.assert_array_equal(actual.images, expected.images)
    np.testing.assert_array_equal(actual.labels, expected.labels)
    assert actual.class_names == expected.class_names
    if expected.usage is None:
        assert actual.usage is None
    else:
        assert actual.usage is not None
        assert actual.usage.tolist() == expected.usage.tolist()


def read_lines(path: Path) -> list[str]:
    """The file's lines; lines[0] is line 1 (the header). The final newline is dropped."""
    return path.read_text().split("\n")[:-1]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def with_pixel(line: str, position: int, value: str) -> str:
    """``line`` with its ``position``-th (1-based) pixel value replaced by ``value``."""
    label, pixels, usage = line.split(",")
    values = pixels.split(" ")
    values[position - 1] = value
    return ",".join([label, " ".join(values), usage])


def with_label(line: str, label: str) -> str:
    return label + line[line.index(",") :]


def without_last_pixel(line: str) -> str:
    label, pixels, usage = line.split(",")
    return ",".join([label, pixels.rsplit(" ", 1)[0], usage])


def with_quoted_pixels(line: str) -> str:
    label, pixels, usage = line.split(",")
    return f'{label},"{pixels}",{usage}'


def edit_line(path: Path, line_number: int, edit) -> Path:
    lines = read_lines(path)
    lines[line_number - 1] = edit(lines[line_number - 1])
    return write_lines(path, lines)


def row_of_line(line_number: int) -> int:
    return line_number - 2


# ---------------------------------------------------------------------------------------------
# Round trips and accepted CSV variants


@pytest.mark.parametrize("name", ["faces.csv", "faces.csv.gz"])
def test_save_then_parse_round_trip(tmp_path, faces, name):
    path = save_fer2013_csv(faces, tmp_path / name)
    if name.endswith(".gz"):
        assert path.read_bytes()[:2] == b"\x1f\x8b"
    else:
        assert read_lines(path)[0] == "emotion,pixels,Usage"
    loaded = parse_fer2013_csv(path)
    assert_same_dataset(loaded, faces)
    assert loaded.skipped == []
    assert loaded.source == str(path)


@pytest.mark.parametrize("name", ["faces.csv", "faces.csv.gz"])
def test_load_fer2013_round_trip(tmp_path, faces, name):
    path = save_fer2013_csv(faces, tmp_path / name)
    assert_same_dataset(load_fer2013(path, cache=False), faces)


def test_save_writes_one_line_per_face_with_2304_values(csv_path, faces):
    lines = read_lines(csv_path)
    assert len(lines) == 1 + ROW_COUNT
    label, pixels, usage = lines[1].split(",")
    assert int(label) == faces.labels[0]
    assert [int(value) for value in pixels.split(" ")] == faces.images[0].ravel().tolist()
    assert usage == faces.usage[0]


def test_crlf_line_endings(csv_path, faces):
    csv_path.write_bytes(csv_path.read_bytes().replace(b"\n", b"\r\n"))
    assert b"\r\n" in csv_path.read_bytes()
    assert_same_dataset(parse_fer2013_csv(csv_path), faces)


def test_crlf_without_usage_column(tmp_path, faces):
    # Without Usage the pixels are the last field, so the CR sits right after a pixel value.
    no_usage = FerDataset(faces.images, faces.labels)
    path = save_fer2013_csv(no_usage, tmp_path / "faces.csv")
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert_same_dataset(parse_fer2013_csv(path), no_usage)


def test_file_without_usage_column(tmp_path, faces):
    no_usage = FerDataset(faces.images, faces.labels)
    path = save_fer2013_csv(no_usage, tmp_path / "faces.csv")
    assert read_lines(path)[0] == "emotion,pixels"
    loaded = parse_fer2013_csv(path)
    assert loaded.usage is None
    assert_same_dataset(loaded, no_usage)


def test_quoted_fields(csv_path, faces):
    lines = read_lines(csv_path)
    write_lines(csv_path, ['"emotion","pixels","Usage"'] + list(map(with_quoted_pixels, lines[1:])))
    assert_same_dataset(parse_fer2013_csv(csv_path), faces)


def test_utf8_byte_order_mark(csv_path, faces):
    csv_path.write_bytes(b"\xef\xbb\xbf" + csv_path.read_bytes())
    assert_same_dataset(parse_fer2013_csv(csv_path), faces)


def test_byte_order_mark_in_gzip_file(tmp_path, faces):
    text = save_fer2013_csv(faces, tmp_path / "faces.csv").read_bytes()
    path = tmp_path / "bom.csv.gz"
    path.write_bytes(gzip.compress(b"\xef\xbb\xbf" + text))
    assert_same_dataset(parse_fer2013_csv(path), faces)


@pytest.mark.parametrize("ending", ["\n", "\n\n\n", "\r\n\r\n"])
def test_trailing_blank_lines(csv_path, faces, ending):
    csv_path.write_bytes(csv_path.read_bytes() + ending.encode())
    loaded = parse_fer2013_csv(csv_path)
    assert loaded.skipped == []
    assert_same_dataset(loaded, faces)


def test_missing_final_newline(csv_path, faces):
    csv_path.write_bytes(csv_path.read_bytes().rstrip(b"\n"))
    assert_same_dataset(parse_fer2013_csv(csv_path), faces)


def test_columns_in_any_order_and_case(tmp_path, faces):
    lines = ["Usage,Pixels,EMOTION"]
    for label, image, usage in zip(faces.labels, faces.images, faces.usage):
        lines.append(f"{usage},{' '.join(map(str, image.ravel().tolist()))},{label}")
    path = write_lines(tmp_path / "reordered.csv", lines)
    assert_same_dataset(parse_fer2013_csv(path), faces)


def test_rows_across_several_decoding_chunks(tmp_path):
    # More rows than one vectorised chunk (64), with every pixel value 0-255 present.
    random = np.random.default_rng(5)
    images = random.integers(0, 256, size=(150, 48, 48), dtype=np.uint8)
    images[0].ravel()[:256] = np.arange(256)
    dataset = FerDataset(images, random.integers(0, NUM_CLASSES, size=150))
    path = save_fer2013_csv(dataset, tmp_path / "many.csv.gz")
    assert_same_dataset(parse_fer2013_csv(path), dataset)


def test_gzip_detected_by_content_not_name(tmp_path, faces):
    compressed = save_fer2013_csv(faces, tmp_path / "faces.csv.gz")
    renamed = tmp_path / "faces-compressed.csv"
    renamed.write_bytes(compressed.read_bytes())
    assert_same_dataset(parse_fer2013_csv(renamed), faces)


def test_multi_member_gzip_reads_every_member(tmp_path, faces):
    text = save_fer2013_csv(faces, tmp_path / "faces.csv").read_bytes()
    lines = text.split(b"\n")
    first_part = b"\n".join(lines[:8]) + b"\n"  # header and 7 faces
    second_part = b"\n".join(lines[8:])  # the other 7 faces
    path = tmp_path / "two-members.csv.gz"
    path.write_bytes(gzip.compress(first_part) + gzip.compress(second_part))
    assert gzip.decompress(path.read_bytes()) == text
    assert_same_dataset(parse_fer2013_csv(path), faces)


def test_write_synthetic_csv(tmp_path):
    path = write_synthetic_csv(tmp_path / "synthetic.csv", n=21, seed=3)
    loaded = load_fer2013(path, cache=False)
    assert_same_dataset(loaded, make_synthetic_dataset(21, seed=3))
    assert np.bincount(loaded.labels).tolist() == [3] * NUM_CLASSES


def test_write_synthetic_csv_needs_one_face_per_class(tmp_path):
    with pytest.raises(DataError, match="at least 7 faces"):
        write_synthetic_csv(tmp_path / "synthetic.csv", n=6)
    assert not (tmp_path / "synthetic.csv").exists()


# ---------------------------------------------------------------------------------------------
# Bad input: every error names the file, the 1-based line and the problem


BAD_ROWS = {
    "pixel count": (
        without_last_pixel,
        "field 'pixels': expected 2304 values, found 2303",
    ),
    "non-integer pixel": (
        lambda line: with_pixel(line, 11, "12a"),
        "field 'pixels': value 11 is '12a', not an integer",
    ),
    "negative pixel": (
        lambda line: with_pixel(line, 2304, "-5"),
        "field 'pixels': value 2304 is '-5', not an integer",
    ),
    "pixel 256": (
        lambda line: with_pixel(line, 1, "256"),
        "field 'pixels': value 1 is 256, outside 0-255",
    ),
    "pixel 1000": (
        lambda line: with_pixel(line, 500, "1000"),
        "field 'pixels': value 500 is 1000, outside 0-255",
    ),
    "empty pixels": (
        lambda line: ",".join([line.split(",")[0], "", line.split(",")[2]]),
        "field 'pixels': expected 2304 values, found 0",
    ),
    "label 7": (
        lambda line: with_label(line, "7"),
        "field 'emotion': '7' is not a known label (expected an integer 0-6)",
    ),
    "label -1": (
        lambda line: with_label(line, "-1"),
        "field 'emotion': '-1' is not a known label (expected an integer 0-6)",
    ),
    "label x": (
        lambda line: with_label(line, "x"),
        "field 'emotion': 'x' is not a known label (expected an integer 0-6)",
    ),
    "empty label": (
        lambda line: with_label(line, ""),
        "field 'emotion': '' is not a known label (expected an integer 0-6)",
    ),
    "too few fields": (
        lambda line: line.rsplit(",", 1)[0],
        "expected 3 fields, found 2",
    ),
    "too many fields": (
        lambda line: line + ",extra",
        "expected 3 fields, found 4",
    ),
}


@pytest.mark.parametrize("line_number", [2, 6, 15])  # first, middle and last row
@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_bad_row_is_reported_with_file_line_and_problem(csv_path, case, line_number):
    edit, problem = BAD_ROWS[case]
    edit_line(csv_path, line_number, edit)
    with pytest.raises(DataError) as caught:
        parse_fer2013_csv(csv_path)
    assert str(caught.value) == f"{csv_path}: line {line_number}: {problem}"


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_bad_row_through_load_fer2013_with_cache(csv_path, isolated_cache, case):
    edit, problem = BAD_ROWS[case]
    edit_line(csv_path, 9, edit)
    with pytest.raises(DataError, match=re.escape(f"{csv_path}: line 9: {problem}")):
        load_fer2013(csv_path)
    # A failed parse must not leave a cache entry behind.
    assert not list(isolated_cache.rglob("*.npz"))


def test_wrong_pixel_count_gives_the_count_found(csv_path):
    edit_line(csv_path, 4, lambda line: with_pixel(line, 7, "7 8 9"))
    with pytest.raises(DataError) as caught:
        parse_fer2013_csv(csv_path)
    assert str(caught.value) == (
        f"{csv_path}: line 4: field 'pixels': expected 2304 values, found 2306"
    )


def test_gzip_file_errors_name_the_line(tmp_path, faces):
    path = save_fer2013_csv(faces, tmp_path / "faces.csv.gz")
    lines = gzip.decompress(path.read_bytes()).decode().split("\n")
    lines[7] = with_pixel(lines[7], 3, "300")
    path.write_bytes(gzip.compress("\n".join(lines).encode()))
    with pytest.raises(DataError) as caught:
        parse_fer2013_csv(path)
    assert str(caught.value) == f"{path}: line 8: field 'pixels': value 3 is 300, outside 0-255"


def test_line_numbers_count_blank_lines_and_crlf(csv_path):
    lines = read_lines(csv_path)
    lines.insert(3, "")  # a blank line 4; the old line 4 becomes line 5
    lines[6] = with_label(lines[6], "9")  # line 7
    csv_path.write_bytes("\r\n".join(lines).encode() + b"\r\n")
    with pytest.raises(DataError) as caught:
        parse_fer2013_csv(csv_path)
    assert str(caught.value).startswith(f"{csv_path}: line 7: field 'emotion': '9'")


def test_line_numbers_with_byte_order_mark_and_quotes(csv_path):
    edit_line(csv_path, 5, lambda line: with_pixel(line, 2, "2x"))
    lines = read_lines(csv_path)
    lines = [lines[0]] + list(map(with_quoted_pixels, lines[1:]))
    csv_path.write_bytes(b"\xef\xbb\xbf" + ("\n".join(lines) + "\n").encode())
    assert '"' in csv_path.read_text()
    with pytest.raises(DataError, match=re.escape(f"{csv_path}: line 5: field 'pixels'")):
        parse_fer2013_csv(csv_path)


def test_bad_row_in_a_later_decoding_chunk(tmp_path):
    random = np.random.default_rng(1)
    dataset = FerDataset(
        random.integers(0, 256, size=(150, 48, 48), dtype=np.uint8),
        random.integers(0, NUM_CLASSES, size=150),
    )
    path = save_fer2013_csv(dataset, tmp_path / "many.csv")
    edit_line(path, 140, lambda line: line[: line.rindex(" ")] + " 999")
    with pytest.raises(DataError) as caught:
        parse_fer2013_csv(path)
    assert (
        str(caught.value) == f"{path}: line 140: field 'pixels': value 2304 is 999, outside 0-255"
    )


@pytest.mark.parametrize(
    ("edits", "first_line", "first_problem"),
    [
        # Pixel problems are found after label problems; the first line still wins.
        ({5: BAD_ROWS["pixel 256"][0], 12: BAD_ROWS["label 7"][0]}, 5, "value 1 is 256"),
        ({3: BAD_ROWS["label x"][0], 4: BAD_ROWS["non-integer pixel"][0]}, 3, "'x'"),
        (
            {
                8: BAD_ROWS["too many fields"][0],
                10: BAD_ROWS["pixel 1000"][0],
                14: BAD_ROWS["label -1"][0],
            },
            8,
            "expected 3 fields, found 4",
        ),
    ],
)
def test_several_bad_rows_report_the_first_line(csv_path, edits, first_line, first_problem):
    for line_number, edit in edits.items():
        edit_line(csv_path, line_number, edit)
    with pytest.raises(DataError) as caught:
        parse_fer2013_csv(csv_path)
    message = str(caught.value)
    assert message.startswith(f"{csv_path}: line {first_line}: ")
    assert first_problem in message
    assert message.endswith(f"(and {len(edits) - 1} more bad rows)")


def test_missing_column_names_line_1_and_the_column(csv_path):
    lines = read_lines(csv_path)
    lines[0] = "emotion,pixel,Usage"
    write_lines(csv_path, lines)
    with pytest.raises(DataError) as caught:
        parse_fer2013_csv(csv_path)
    message = str(caught.value)
    assert message.startswith(f"{csv_path}: line 1: missing column(s) pixels;")
    assert "'emotion,pixel,Usage'" in message


def test_header_without_any_required_column(csv_path):
    lines = read_lines(csv_path)
    lines[0] = "label,image"
    write_lines(csv_path, lines)
    with pytest.raises(DataError, match=re.escape(f"{csv_path}: line 1: missing column(s) ")):
        parse_fer2013_csv(csv_path)
    with pytest.raises(DataError, match="emotion, pixels"):
        parse_fer2013_csv(csv_path)


@pytest.mark.parametrize("content", [b"", b"\n\n", b"  \r\n", b"\xef\xbb\xbf"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=re.escape(f"{path}: the file is empty")):
        load_fer2013(path)


def test_empty_gzip_file(tmp_path):
    path = tmp_path / "empty.csv.gz"
    path.write_bytes(gzip.compress(b""))
    with pytest.raises(DataError, match=re.escape(f"{path}: the file is empty")):
        parse_fer2013_csv(path)


@pytest.mark.parametrize("content", [b"emotion,pixels,Usage\n", b"emotion,pixels\r\n\r\n\r\n"])
def test_header_only_file(tmp_path, content):
    path = tmp_path / "header.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=re.escape(f"{path}: the file has a header but no rows")):
        load_fer2013(path)


def test_missing_file(tmp_path):
    path = tmp_path / "absent.csv"
    with pytest.raises(DataError, match=re.escape(f"{path}: no such file")):
        load_fer2013(path)
    with pytest.raises(DataError, match=re.escape(f"{path}: no such file")):
        parse_fer2013_csv(path)


def test_parse_a_folder_is_an_error(tmp_path):
    with pytest.raises(DataError, match=re.escape(f"{tmp_path}: is a folder, not a CSV file")):
        parse_fer2013_csv(tmp_path)


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "corrupt.csv.gz"
    path.write_bytes(b"\x1f\x8b" + bytes(range(200)))
    with pytest.raises(DataError, match=re.escape(f"{path}: not a valid gzip file")):
        load_fer2013(path)


def test_truncated_gzip(tmp_path, faces):
    path = save_fer2013_csv(faces, tmp_path / "faces.csv.gz")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match=re.escape(f"{path}: not a valid gzip file")):
        parse_fer2013_csv(path)


def test_errors_are_ferkit_errors_with_exit_code_2(csv_path):
    edit_line(csv_path, 3, BAD_ROWS["label 7"][0])
    with pytest.raises(FerkitError) as caught:
        parse_fer2013_csv(csv_path)
    assert isinstance(caught.value, DataError)
    assert caught.value.exit_code == 2


# ---------------------------------------------------------------------------------------------
# skip_bad_rows


def test_skip_bad_rows_keeps_the_good_rows(csv_path, faces):
    bad_lines = {
        3: BAD_ROWS["pixel 256"],
        6: BAD_ROWS["label 7"],
        10: BAD_ROWS["too few fields"],
        11: BAD_ROWS["non-integer pixel"],
        15: BAD_ROWS["pixel count"],
    }
    for line_number, (edit, _) in bad_lines.items():
        edit_line(csv_path, line_number, edit)
    loaded = parse_fer2013_csv(csv_path, skip_bad_rows=True)
    assert loaded.skipped == [
        f"line {line_number}: {problem}" for line_number, (_, problem) in bad_lines.items()
    ]
    kept = np.setdiff1d(np.arange(ROW_COUNT), [row_of_line(line) for line in bad_lines])
    assert len(loaded) == ROW_COUNT - len(bad_lines)
    assert_same_dataset(loaded, faces.subset(kept))


def test_skip_bad_rows_in_a_large_file(tmp_path):
    # Good rows sharing a decoding chunk with a bad row take the slow path; check them too.
    random = np.random.default_rng(2)
    dataset = FerDataset(
        random.integers(0, 256, size=(150, 48, 48), dtype=np.uint8),
        random.integers(0, NUM_CLASSES, size=150),
        usage=np.resize(np.array(["Training", "PublicTest"]), 150),
    )
    path = save_fer2013_csv(dataset, tmp_path / "many.csv")
    for line_number in (2, 70, 71, 151):
        edit_line(path, line_number, lambda line: with_pixel(line, 100, "4000"))
    loaded = load_fer2013(path, skip_bad_rows=True)
    assert loaded.skipped == [
        f"line {line}: field 'pixels': value 100 is 4000, outside 0-255"
        for line in (2, 70, 71, 151)
    ]
    kept = np.setdiff1d(np.arange(150), [0, 68, 69, 149])
    assert_same_dataset(loaded, dataset.subset(kept))


def test_skip_bad_rows_with_no_valid_rows(csv_path):
    for line_number in range(2, ROW_COUNT + 2):
        edit_line(csv_path, line_number, BAD_ROWS["label x"][0])
    with pytest.raises(DataError, match=re.escape(f"{csv_path}: no valid rows (skipped 14 bad")):
        parse_fer2013_csv(csv_path, skip_bad_rows=True)


def test_skip_bad_rows_without_bad_rows(csv_path, faces):
    loaded = load_fer2013(csv_path, skip_bad_rows=True)
    assert loaded.skipped == []
    assert_same_dataset(loaded, faces)


# ---------------------------------------------------------------------------------------------
# The parsed-dataset cache


def cache_entries(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*.npz"))


def forbid_parsing(monkeypatch) -> None:
    def parse_must_not_run(*arguments, **keywords):
        raise AssertionError("parse_fer2013_csv ran; the cache should have answered")

    monkeypatch.setattr(ferkit.data, "parse_fer2013_csv", parse_must_not_run)


def count_parses(monkeypatch) -> list:
    calls = []

    def counting_parse(*arguments, **keywords):
        calls.append(arguments)
        return parse_fer2013_csv(*arguments, **keywords)

    monkeypatch.setattr(ferkit.data, "parse_fer2013_csv", counting_parse)
    return calls


@pytest.mark.parametrize("name", ["faces.csv", "faces.csv.gz"])
def test_second_load_comes_from_the_cache(tmp_path, faces, monkeypatch, name):
    path = save_fer2013_csv(faces, tmp_path / "data" / name)
    cache_dir = tmp_path / "explicit-cache"
    first = load_fer2013(path, cache_dir=cache_dir)
    entries = cache_entries(cache_dir)
    assert len(entries) == 1 and entries[0].parent == cache_dir / "datasets"
    forbid_parsing(monkeypatch)
    second = load_fer2013(path, cache_dir=cache_dir)
    assert_same_dataset(second, first)
    assert_same_dataset(second, faces)
    assert second.source == first.source == str(path)
    assert second.skipped == []
    assert second.labels.dtype == np.int64
    assert cache_entries(cache_dir) == entries


def test_cache_dir_from_environment(csv_path, isolated_cache, monkeypatch):
    assert default_cache_dir() == isolated_cache
    load_fer2013(csv_path)
    assert len(cache_entries(isolated_cache)) == 1
    forbid_parsing(monkeypatch)
    load_fer2013(csv_path)


def test_default_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("FERKIT_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("FERKIT_CACHE_DIR")
    assert default_cache_dir() == tmp_path / "xdg" / "ferkit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "ferkit"


def test_cache_keeps_a_missing_usage_column(tmp_path, faces, monkeypatch):
    path = save_fer2013_csv(FerDataset(faces.images, faces.labels), tmp_path / "faces.csv")
    load_fer2013(path)
    forbid_parsing(monkeypatch)
    cached = load_fer2013(path)
    assert cached.usage is None
    assert_same_dataset(cached, FerDataset(faces.images, faces.labels))


def test_cache_keeps_skipped_rows(csv_path, faces, monkeypatch):
    edit_line(csv_path, 4, BAD_ROWS["pixel 1000"][0])
    first = load_fer2013(csv_path, skip_bad_rows=True)
    forbid_parsing(monkeypatch)
    second = load_fer2013(csv_path, skip_bad_rows=True)
    assert second.skipped == first.skipped == [f"line 4: {BAD_ROWS['pixel 1000'][1]}"]
    assert_same_dataset(second, faces.subset(np.delete(np.arange(ROW_COUNT), 2)))


def test_cached_skip_bad_rows_load_does_not_hide_errors(csv_path):
    edit_line(csv_path, 4, BAD_ROWS["label 7"][0])
    assert len(load_fer2013(csv_path, skip_bad_rows=True)) == ROW_COUNT - 1
    with pytest.raises(DataError, match=re.escape(f"{csv_path}: line 4: field 'emotion'")):
        load_fer2013(csv_path)


def test_changed_content_invalidates_the_cache(csv_path, faces, monkeypatch):
    load_fer2013(csv_path)
    before = csv_path.stat()
    # New labels, same size and the same mtime: only the content differs.
    changed_labels = (faces.labels + 1) % NUM_CLASSES
    save_fer2013_csv(FerDataset(faces.images, changed_labels, usage=faces.usage), csv_path)
    os.utime(csv_path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert csv_path.stat().st_size == before.st_size
    calls = count_parses(monkeypatch)
    reloaded = load_fer2013(csv_path)
    assert len(calls) == 1
    np.testing.assert_array_equal(reloaded.labels, changed_labels)


def test_changed_mtime_invalidates_the_cache(csv_path, isolated_cache, monkeypatch):
    load_fer2013(csv_path)
    modified = csv_path.stat().st_mtime_ns + 5_000_000_000
    os.utime(csv_path, ns=(modified, modified))
    calls = count_parses(monkeypatch)
    load_fer2013(csv_path)
    assert len(calls) == 1
    assert len(cache_entries(isolated_cache)) == 2
    load_fer2013(csv_path)  # and that new entry answers the next load
    assert len(calls) == 1


def test_cache_off_neither_reads_nor_writes(csv_path, isolated_cache):
    load_fer2013(csv_path, cache=False)
    assert not isolated_cache.exists()


def test_unwritable_cache_dir_only_warns(csv_path, faces, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    with pytest.warns(UserWarning, match="could not write dataset cache"):
        loaded = load_fer2013(csv_path, cache_dir=blocker / "cache")
    assert_same_dataset(loaded, faces)


def test_unreadable_cache_entry_warns_and_reparses(csv_path, faces, isolated_cache):
    load_fer2013(csv_path)
    (entry,) = cache_entries(isolated_cache)
    entry.write_bytes(b"this is not an npz archive")
    with pytest.warns(UserWarning, match="ignoring unreadable cache entry"):
        loaded = load_fer2013(csv_path)
    assert_same_dataset(loaded, faces)


def test_truncated_cache_entry_warns_and_reparses(csv_path, faces, isolated_cache):
    load_fer2013(csv_path)
    (entry,) = cache_entries(isolated_cache)
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    with pytest.warns(UserWarning, match="ignoring unreadable cache entry"):
        loaded = load_fer2013(csv_path)
    assert_same_dataset(loaded, faces)


def test_data_folder_is_never_written(tmp_path, faces, isolated_cache):
    data_folder = tmp_path / "read-only-data"
    plain = save_fer2013_csv(faces, data_folder / "faces.csv")
    compressed = save_fer2013_csv(faces, data_folder / "faces.csv.gz")
    before = {path.name: path.stat().st_mtime_ns for path in data_folder.iterdir()}
    data_folder.chmod(0o555)  # root ignores this, hence the listing check below
    try:
        for path in (plain, compressed):
            for _ in range(2):  # a parse-and-store, then a cache hit
                assert_same_dataset(load_fer2013(path), faces)
            assert_same_dataset(load_fer2013(path, skip_bad_rows=True), faces)
    finally:
        data_folder.chmod(0o755)
    after = {path.name: path.stat().st_mtime_ns for path in data_folder.iterdir()}
    assert after == before
    assert len(cache_entries(isolated_cache)) == 4


# ---------------------------------------------------------------------------------------------
# Image folders


def save_image(path: Path, pixels: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels)
    if mode is not None:
        image = image.convert(mode)
    image.save(path)
    return path


def gray(value: int, size: int = 48) -> np.ndarray:
    return np.full((size, size), value, dtype=np.uint8)


def test_image_folder_flat_layout_with_fer_names(tmp_path):
    # FER names in any case; each image is one flat value so rows can be told apart.
    save_image(tmp_path / "happy" / "a.png", gray(30))
    save_image(tmp_path / "happy" / "b.png", gray(31))
    save_image(tmp_path / "SAD" / "c.png", gray(60))
    save_image(tmp_path / "Angry" / "d.png", gray(90))
    save_image(tmp_path / "neutral" / "e.png", gray(120))
    dataset = load_fer2013(tmp_path)
    assert dataset.class_names == FER2013_CLASS_NAMES
    assert dataset.usage is None
    assert dataset.source == str(tmp_path)
    label_of_value = {
        int(image[0, 0]): int(label) for image, label in zip(dataset.images, dataset.labels)
    }
    assert label_of_value == {30: 3, 31: 3, 60: 4, 90: 0, 120: 6}


def test_image_folder_split_layout(tmp_path):
    save_image(tmp_path / "train" / "happy" / "a.png", gray(10))
    save_image(tmp_path / "train" / "fear" / "b.png", gray(20))
    save_image(tmp_path / "test" / "happy" / "c.png", gray(30))
    save_image(tmp_path / "test" / "disgust" / "d.png", gray(40))
    save_image(tmp_path / "PrivateTest" / "surprise" / "e.png", gray(50))
    dataset = load_image_folder(tmp_path)
    assert dataset.class_names == FER2013_CLASS_NAMES
    assert dataset.usage is not None
    rows = {
        int(image[0, 0]): (FER2013_CLASS_NAMES[label], usage)
        for image, label, usage in zip(dataset.images, dataset.labels, dataset.usage)
    }
    assert rows == {
        10: ("Happy", "Training"),
        20: ("Fear", "Training"),
        30: ("Happy", "PublicTest"),
        40: ("Disgust", "PublicTest"),
        50: ("Surprise", "PrivateTest"),
    }
    train, validation = split_dataset(dataset, strategy="usage")
    assert sorted(train.images[:, 0, 0].tolist()) == [10, 20]
    assert sorted(validation.images[:, 0, 0].tolist()) == [30, 40]


def test_image_folder_colour_and_odd_sizes_become_48x48_gray(tmp_path):
    random = np.random.default_rng(0)
    colour = random.integers(0, 256, size=(73, 101, 3), dtype=np.uint8)
    small_gray = random.integers(0, 256, size=(20, 20), dtype=np.uint8)
    with_alpha = random.integers(0, 256, size=(50, 50, 4), dtype=np.uint8)
    files = [
        save_image(tmp_path / "happy" / "colour.png", colour),
        save_image(tmp_path / "happy" / "small.png", small_gray),
        save_image(tmp_path / "sad" / "alpha.png", with_alpha),
        save_image(tmp_path / "sad" / "photo.jpg", colour),
    ]
    dataset = load_image_folder(tmp_path)
    assert dataset.images.shape == (4, 48, 48)
    assert dataset.images.dtype == np.uint8
    expected = {to_face_array(read_image(path)).tobytes() for path in files}
    assert {image.tobytes() for image in dataset.images} == expected
    # A colour face converts like PIL's own L conversion of the centre square.
    crop = Image.fromarray(colour).convert("L").crop((14, 0, 87, 73)).resize((48, 48), Image.BOX)
    assert np.asarray(crop).tobytes() in expected


def test_image_folder_custom_class_names_are_sorted(tmp_path):
    save_image(tmp_path / "cat" / "a.png", gray(1))
    save_image(tmp_path / "Dog" / "b.png", gray(2))
    save_image(tmp_path / "bird" / "c.png", gray(3))
    save_image(tmp_path / "happy" / "d.png", gray(4))  # a FER name among custom ones
    dataset = load_image_folder(tmp_path)
    assert dataset.class_names == ("bird", "cat", "Dog", "happy")
    label_of_value = {
        int(image[0, 0]): int(label) for image, label in zip(dataset.images, dataset.labels)
    }
    assert label_of_value == {3: 0, 1: 1, 2: 2, 4: 3}


def test_image_folder_ignores_hidden_and_non_image_files(tmp_path):
    save_image(tmp_path / "happy" / "a.png", gray(7))
    (tmp_path / "happy" / "notes.txt").write_text("not a face")
    save_image(tmp_path / "happy" / ".hidden.png", gray(8))
    save_image(tmp_path / ".thumbnails" / "x.png", gray(9))
    dataset = load_image_folder(tmp_path)
    assert dataset.images[:, 0, 0].tolist() == [7]
    assert dataset.skipped == []


def test_image_folder_corrupt_image(tmp_path):
    save_image(tmp_path / "happy" / "good.png", gray(5))
    save_image(tmp_path / "sad" / "good.png", gray(6))
    corrupt = tmp_path / "sad" / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    with pytest.raises(DataError) as caught:
        load_fer2013(tmp_path)
    assert str(caught.value).startswith(f"{corrupt}: not a readable image")
    dataset = load_fer2013(tmp_path, skip_bad_rows=True)
    assert sorted(dataset.images[:, 0, 0].tolist()) == [5, 6]
    assert len(dataset.skipped) == 1
    assert dataset.skipped[0].startswith(f"{corrupt}: not a readable image")


def test_image_folder_several_corrupt_images(tmp_path):
    save_image(tmp_path / "happy" / "good.png", gray(5))
    for name in ("bad1.png", "bad2.jpg"):
        (tmp_path / "happy" / name).write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"\(and 1 more bad files\)$"):
        load_image_folder(tmp_path)


def test_image_folder_with_only_corrupt_images(tmp_path):
    (tmp_path / "happy").mkdir()
    (tmp_path / "happy" / "bad.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path}: no readable images (skipped 1")):
        load_image_folder(tmp_path, skip_bad_rows=True)


def test_image_folder_empty(tmp_path):
    with pytest.raises(DataError, match=re.escape(f"{tmp_path}: no class folders")):
        load_fer2013(tmp_path)
    (tmp_path / "happy").mkdir()
    (tmp_path / "sad").mkdir()
    with pytest.raises(DataError, match=re.escape(f"{tmp_path}: no images")):
        load_fer2013(tmp_path)


def test_image_folder_missing(tmp_path):
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'absent'}: no such folder")):
        load_image_folder(tmp_path / "absent")


# ---------------------------------------------------------------------------------------------
# Splits


def indexed_dataset(labels, usage=None) -> FerDataset:
    """Faces whose first two pixels spell their row index, so subsets can be traced back."""
    labels = np.asarray(labels)
    images = np.zeros((len(labels), 48, 48), dtype=np.uint8)
    images[:, 0, 0] = np.arange(len(labels)) % 256
    images[:, 0, 1] = np.arange(len(labels)) // 256
    return FerDataset(images, labels, usage=usage, source="indexed")


def row_indices(dataset: FerDataset) -> np.ndarray:
    pixels = dataset.images[:, 0, :2].astype(np.int64)
    return pixels[:, 0] + 256 * pixels[:, 1]


@pytest.fixture(scope="module")
def uneven_labels() -> np.ndarray:
    # 7 classes of 50, 100, 150, ... faces, shuffled.
    labels = np.repeat(np.arange(NUM_CLASSES), 50 * np.arange(1, NUM_CLASSES + 1))
    return np.random.default_rng(0).permutation(labels)


def test_stratified_split_proportions(uneven_labels):
    dataset = indexed_dataset(uneven_labels)
    train, validation = split_dataset(dataset, val_fraction=0.2, seed=0)
    assert len(train) + len(validation) == len(dataset)
    train_rows, validation_rows = row_indices(train), row_indices(validation)
    assert np.intersect1d(train_rows, validation_rows).size == 0
    np.testing.assert_array_equal(
        np.sort(np.concatenate([train_rows, validation_rows])), np.arange(len(dataset))
    )
    np.testing.assert_array_equal(train.labels, uneven_labels[train_rows])
    class_sizes = np.bincount(uneven_labels)
    np.testing.assert_array_equal(np.bincount(validation.labels), class_sizes // 5)
    np.testing.assert_array_equal(np.bincount(train.labels), class_sizes - class_sizes // 5)


def test_stratified_split_is_deterministic_per_seed(uneven_labels):
    dataset = indexed_dataset(uneven_labels)
    first = row_indices(split_dataset(dataset, seed=3)[1])
    again = row_indices(split_dataset(dataset, seed=3)[1])
    other = row_indices(split_dataset(dataset, seed=4)[1])
    np.testing.assert_array_equal(first, again)
    assert len(other) == len(first)
    assert not np.array_equal(np.sort(first), np.sort(other))


def test_stratified_split_other_fraction(uneven_labels):
    train, validation = split_dataset(indexed_dataset(uneven_labels), val_fraction=0.5)
    np.testing.assert_array_equal(np.bincount(validation.labels), np.bincount(train.labels))


def test_stratified_split_with_a_singleton_class():
    labels = np.array([0] * 10 + [1] * 10 + [2])
    train, validation = split_dataset(indexed_dataset(labels), val_fraction=0.2)
    assert len(train) + len(validation) == len(labels)
    assert np.union1d(row_indices(train), row_indices(validation)).size == len(labels)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_stratified_split_rejects_bad_fractions(fraction):
    with pytest.raises(FerkitError, match="val_fraction must be between 0 and 1"):
        split_dataset(indexed_dataset([0, 1] * 10), val_fraction=fraction)


def test_unknown_split_strategy():
    with pytest.raises(FerkitError, match="unknown split 'random'; choose one of stratified"):
        split_dataset(indexed_dataset([0, 1] * 10), strategy="random")


def test_usage_split():
    usage = np.resize(np.array(["Training", "Training", "PublicTest", "PrivateTest"]), 40)
    labels = np.arange(40) % NUM_CLASSES
    dataset = indexed_dataset(labels, usage=usage)
    train, validation = split_dataset(dataset, strategy="usage")
    np.testing.assert_array_equal(row_indices(train), np.flatnonzero(usage == "Training"))
    np.testing.assert_array_equal(row_indices(validation), np.flatnonzero(usage == "PublicTest"))
    np.testing.assert_array_equal(train.labels, labels[usage == "Training"])
    assert set(train.usage.tolist()) == {"Training"}
    assert set(validation.usage.tolist()) == {"PublicTest"}
    private_rows = set(np.flatnonzero(usage == "PrivateTest").tolist())
    assert private_rows.isdisjoint(row_indices(train).tolist() + row_indices(validation).tolist())


def test_usage_split_of_a_synthetic_csv(tmp_path):
    path = write_synthetic_csv(tmp_path / "faces.csv", n=70)
    train, validation = split_dataset(load_fer2013(path, cache=False), strategy="usage")
    assert (len(train), len(validation)) == (56, 7)
    assert np.bincount(validation.labels).tolist() == [1] * NUM_CLASSES


def test_usage_split_without_usage_column():
    with pytest.raises(FerkitError, match="split 'usage' needs a Usage column"):
        split_dataset(indexed_dataset([0, 1] * 5), strategy="usage")


def test_usage_split_without_public_test_rows():
    dataset = indexed_dataset([0, 1] * 5, usage=["Training"] * 10)
    with pytest.raises(FerkitError, match="found no PublicTest rows"):
        split_dataset(dataset, strategy="usage")


@pytest.mark.parametrize("folds", [2, 5])
def test_stratified_folds_partition_every_index_once(uneven_labels, folds):
    pairs = stratified_folds(uneven_labels, folds=folds, seed=0)
    assert len(pairs) == folds
    everything = np.arange(len(uneven_labels))
    for train_indices, validation_indices in pairs:
        assert np.intersect1d(train_indices, validation_indices).size == 0
        np.testing.assert_array_equal(
            np.sort(np.concatenate([train_indices, validation_indices])), everything
        )
        np.testing.assert_array_equal(
            np.bincount(uneven_labels[validation_indices], minlength=NUM_CLASSES),
            np.bincount(uneven_labels) // folds,
        )
    all_validation = np.concatenate([validation for _, validation in pairs])
    np.testing.assert_array_equal(np.sort(all_validation), everything)


def test_stratified_folds_deterministic_per_seed(uneven_labels):
    first = stratified_folds(uneven_labels, folds=3, seed=1)
    again = stratified_folds(uneven_labels, folds=3, seed=1)
    other = stratified_folds(uneven_labels, folds=3, seed=2)
    for (_, validation), (_, repeated) in zip(first, again):
        np.testing.assert_array_equal(validation, repeated)
    assert not np.array_equal(first[0][1], other[0][1])


def test_stratified_folds_rejects_too_few_faces():
    with pytest.raises(FerkitError, match="folds must be at least 2"):
        stratified_folds(np.array([0, 1] * 5), folds=1)
    with pytest.raises(FerkitError, match="folds=5 needs at least 5 faces per class"):
        stratified_folds(np.array([0] * 10 + [1] * 4), folds=5)


# ---------------------------------------------------------------------------------------------
# The shared FER2013 CSV

FER2013_TRAINING_COUNTS = [3995, 436, 4097, 7215, 4830, 3171, 4965]
FER2013_PUBLIC_TEST_COUNTS = [467, 56, 496, 895, 653, 415, 607]


@pytest.fixture(scope="module")
def fer2013(tmp_path_factory) -> FerDataset:
    """The shared FER2013 CSV, parsed once for this module (about 2 s)."""
    if not SHARED_FER2013.is_file():
        pytest.skip(f"shared FER2013 CSV not found at {SHARED_FER2013}")
    return load_fer2013(SHARED_FER2013, cache_dir=tmp_path_factory.mktemp("fer2013-cache"))


def test_fer2013_shape(fer2013):
    assert len(fer2013) == 32_298
    assert fer2013.images.shape == (32_298, 48, 48)
    assert fer2013.images.dtype == np.uint8
    assert fer2013.class_names == FER2013_CLASS_NAMES
    assert fer2013.skipped == []
    assert 0 < fer2013.images.mean() < 255


def test_fer2013_usage_counts(fer2013):
    assert fer2013.usage is not None
    values, counts = np.unique(fer2013.usage, return_counts=True)
    assert dict(zip(values.tolist(), counts.tolist())) == {"Training": 28_709, "PublicTest": 3_589}
    # Rows are ordered by split: all Training rows come first.
    assert (fer2013.usage[:28_709] == "Training").all()


def test_fer2013_class_counts_per_split(fer2013):
    training = fer2013.labels[fer2013.usage == "Training"]
    public_test = fer2013.labels[fer2013.usage == "PublicTest"]
    assert np.bincount(training, minlength=NUM_CLASSES).tolist() == FER2013_TRAINING_COUNTS
    assert np.bincount(public_test, minlength=NUM_CLASSES).tolist() == FER2013_PUBLIC_TEST_COUNTS


def test_fer2013_usage_split(fer2013):
    train, validation = split_dataset(fer2013, strategy="usage")
    assert (len(train), len(validation)) == (28_709, 3_589)
    assert train.class_counts()["Happy"] == 7215


def test_rows_with_compensating_pixel_counts_are_both_reported(tmp_path):
    """A short row next to a long one must not pass as two rows of 2304 values."""
    path = save_fer2013_csv(make_synthetic_dataset(14), tmp_path / "faces.csv")
    lines = path.read_text().splitlines()
    emotion, pixels, usage = lines[2].split(",")
    lines[2] = ",".join([emotion, " ".join(pixels.split()[:-1]), usage])
    emotion, pixels, usage = lines[3].split(",")
    lines[3] = ",".join([emotion, pixels + " 7", usage])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        DataError, match=r"line 3: field 'pixels': expected 2304 values, found 2303"
    ):
        load_fer2013(path, cache=False)
    dataset = load_fer2013(path, cache=False, skip_bad_rows=True)
    assert len(dataset) == 12
    assert [entry.split(":")[0] for entry in dataset.skipped] == ["line 3", "line 4"]


def test_unknown_usage_values_are_reported(tmp_path):
    path = save_fer2013_csv(make_synthetic_dataset(14), tmp_path / "faces.csv")
    lines = path.read_text().splitlines()
    lines[5] = lines[5].rsplit(",", 1)[0] + ",Trainig"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"line 6: field 'Usage': 'Trainig' is not one of"):
        load_fer2013(path, cache=False)


def test_split_layout_with_a_stray_image_reports_it(tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        for name in ("happy", "sad"):
            (tmp_path / split / name).mkdir(parents=True)
            Image.fromarray(np.zeros((48, 48), np.uint8)).save(tmp_path / split / name / "a.png")
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(tmp_path / "train" / "stray.png")
    with pytest.raises(DataError, match=r"stray.png: image outside a class folder"):
        load_fer2013(tmp_path)
    dataset = load_fer2013(tmp_path, skip_bad_rows=True)
    assert len(dataset) == 4 and set(dataset.usage) == {"Training", "PublicTest"}
    assert len(dataset.skipped) == 1


def test_empty_custom_class_folder_still_declares_its_class(tmp_path):
    from PIL import Image

    for name in ("cat", "dog", "emu"):
        (tmp_path / name).mkdir()
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(tmp_path / "cat" / "a.png")
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(tmp_path / "emu" / "b.png")
    dataset = load_fer2013(tmp_path)
    assert dataset.class_names == ("cat", "dog", "emu")
    assert sorted(dataset.labels.tolist()) == [0, 2]
