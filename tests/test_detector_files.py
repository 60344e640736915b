"""The YuNet file's lookup order, one-time download, checksum, install command and fallback.

The download code is the real one; in download tests only the URL (a file:// stand-in) and
the pinned hash are swapped, so no test touches the network. Lookup and install tests use
../shared/models' copy of the exact file users download, through the real checksum code.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from ferkit.faces import detector_files
from ferkit.faces.detection import create_detector
from ferkit.faces.detector_files import (
    YUNET_FILE_NAME,
    YUNET_SHA256,
    DetectorUnavailable,
    install_yunet_model,
    resolve_yunet_model,
    yunet_model_path,
)
from ferkit.utils.errors import FerkitError, FerkitWarning


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty user cache, downloads allowed, no $FERKIT_YUNET_MODEL."""
    monkeypatch.setenv("FERKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("FERKIT_OFFLINE", raising=False)
    monkeypatch.delenv("FERKIT_YUNET_MODEL", raising=False)
    return tmp_path / "cache" / "models"


@pytest.fixture
def zoo(tmp_path, monkeypatch, cache):
    """A stand-in for OpenCV zoo's file behind a file:// URL, with its hash pinned."""
    source = tmp_path / "zoo" / YUNET_FILE_NAME
    source.parent.mkdir()
    source.write_bytes(b"stand-in for the YuNet ONNX model " * 100)
    monkeypatch.setattr(detector_files, "YUNET_URL", source.as_uri())
    monkeypatch.setattr(
        detector_files, "YUNET_SHA256", hashlib.sha256(source.read_bytes()).hexdigest()
    )
    return source


def _files(folder) -> list[str]:
    return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []


def test_missing_file_is_downloaded_once_into_the_cache(zoo, cache):
    path = yunet_model_path(progress=False)
    assert path == cache / YUNET_FILE_NAME and path.read_bytes() == zoo.read_bytes()
    assert _files(cache) == [YUNET_FILE_NAME]  # no temporary file left behind
    zoo.unlink()  # a second download would now fail: the cached, checked file is used
    assert yunet_model_path(progress=False) == path
    assert yunet_model_path(offline=True) == path


def test_a_download_with_the_wrong_hash_is_not_kept(zoo, cache, monkeypatch):
    actual = detector_files.YUNET_SHA256
    monkeypatch.setattr(detector_files, "YUNET_SHA256", "0" * 64)
    with pytest.raises(DetectorUnavailable) as caught:
        yunet_model_path(progress=False)
    message = str(caught.value)
    assert actual in message and "0" * 64 in message and zoo.as_uri() in message
    assert _files(cache) == []


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_offline_nothing_is_downloaded_and_the_message_says_how_to_install(
    zoo, cache, monkeypatch, how
):
    def no_network(*arguments, **keywords):
        raise AssertionError("downloaded while offline")

    monkeypatch.setattr(detector_files.urllib.request, "urlopen", no_network)
    if how == "environment":
        monkeypatch.setenv("FERKIT_OFFLINE", "1")
    with pytest.raises(DetectorUnavailable) as caught:
        yunet_model_path(offline=how == "argument")
    message = str(caught.value)
    for hint in ("--offline", "ferkit detector install", "--detector-model", "FERKIT_YUNET_MODEL",
                 zoo.as_uri(), str(cache / YUNET_FILE_NAME)):  # fmt: skip
        assert hint in message
    assert _files(cache) == []


def test_an_unreachable_url_gives_a_clear_error(zoo, cache, tmp_path, monkeypatch):
    missing = (tmp_path / "nowhere" / YUNET_FILE_NAME).as_uri()
    monkeypatch.setattr(detector_files, "YUNET_URL", missing)
    with pytest.raises(DetectorUnavailable, match="could not download") as caught:
        yunet_model_path(progress=False)
    assert missing in str(caught.value) and "ferkit detector install" in str(caught.value)
    assert _files(cache) == []


def test_a_damaged_cached_file_is_refused_or_downloaded_again(zoo, cache):
    cache.mkdir(parents=True)
    (cache / YUNET_FILE_NAME).write_bytes(b"truncated")
    with pytest.raises(
        DetectorUnavailable, match=f"expected {detector_files.YUNET_SHA256}.*damaged"
    ):
        yunet_model_path(offline=True)
    assert yunet_model_path(progress=False).read_bytes() == zoo.read_bytes()


def test_a_damaged_cached_file_is_named_when_the_download_fails_too(zoo, cache, tmp_path,
                                                                   monkeypatch):  # fmt: skip
    cache.mkdir(parents=True)
    (cache / YUNET_FILE_NAME).write_bytes(b"truncated")
    monkeypatch.setattr(detector_files, "YUNET_URL", (tmp_path / "gone.onnx").as_uri())
    with pytest.raises(DetectorUnavailable) as caught:
        yunet_model_path(progress=False)
    message = str(caught.value)
    assert "damaged or replaced" in message and "could not download" in message
    assert (cache / YUNET_FILE_NAME).read_bytes() == b"truncated"  # not half-replaced


def test_the_download_progress_bar_follows_the_progress_setting(zoo, cache, capsys):
    from ferkit.faces.detector_files import _download

    _download(cache / YUNET_FILE_NAME, progress=True)
    assert "downloading" in capsys.readouterr().err
    (cache / YUNET_FILE_NAME).unlink()
    _download(cache / YUNET_FILE_NAME, progress=False)
    assert "downloading" not in capsys.readouterr().err


def test_predict_no_progress_reaches_the_detector_file(monkeypatch, tiny_run, tmp_path, capsys):
    from PIL import Image

    from ferkit.cli import main
    from ferkit.faces import detection

    asked = []

    def resolve(model_path=None, offline=False, progress=True):
        asked.append(progress)
        raise DetectorUnavailable("no file here")

    monkeypatch.setattr(detection, "resolve_yunet_model", resolve)
    photo = tmp_path / "gray.png"
    Image.fromarray(np.full((64, 64), 128, np.uint8)).save(photo)
    assert main(["predict", str(photo), "--model", str(tiny_run)]) == 0
    assert main(["predict", str(photo), "--model", str(tiny_run), "--no-progress"]) == 0
    assert asked == [True, False]
    errors = capsys.readouterr().err
    assert "using the Haar face detector instead of YuNet" in errors
    assert errors.count("detector: haar") == 2


def test_a_yunet_file_given_with_another_detector_is_reported(shared_yunet):
    with pytest.warns(FerkitWarning, match="not used with --detector haar"):
        assert create_detector("haar", shared_yunet).name == "haar"


def test_lookup_order_argument_then_environment_then_cache(cache, shared_yunet, tmp_path,
                                                           monkeypatch):  # fmt: skip
    with pytest.raises(DetectorUnavailable):
        resolve_yunet_model(offline=True)
    installed = install_yunet_model(shared_yunet)  # the real checksum check
    assert installed == cache / YUNET_FILE_NAME
    assert installed.read_bytes() == shared_yunet.read_bytes()
    assert resolve_yunet_model(offline=True) == installed
    mine = tmp_path / "mine.onnx"
    mine.write_bytes(shared_yunet.read_bytes())
    monkeypatch.setenv("FERKIT_YUNET_MODEL", str(mine))
    assert resolve_yunet_model(offline=True) == mine
    given = tmp_path / "given.onnx"
    given.write_bytes(shared_yunet.read_bytes())
    assert resolve_yunet_model(given, offline=True) == given
    monkeypatch.setenv("FERKIT_YUNET_MODEL", str(tmp_path / "gone.onnx"))
    with pytest.raises(FerkitError, match="FERKIT_YUNET_MODEL .*gone.onnx: no such file"):
        resolve_yunet_model(offline=True)


def test_install_refuses_a_damaged_copy(cache, shared_yunet, tmp_path):
    damaged = tmp_path / YUNET_FILE_NAME
    data = bytearray(shared_yunet.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    damaged.write_bytes(bytes(data))
    with pytest.raises(FerkitError, match=f"expected {YUNET_SHA256}.*not installed"):
        install_yunet_model(damaged)
    assert _files(cache) == []
    with pytest.raises(FerkitError, match="no such file"):
        install_yunet_model(tmp_path / "missing.onnx")


def test_a_damaged_cached_copy_falls_back_to_haar_with_one_warning(cache, shared_yunet):
    cache.mkdir(parents=True)
    data = bytearray(shared_yunet.read_bytes())
    data[1000] ^= 0xFF
    (cache / YUNET_FILE_NAME).write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        detector = create_detector("yunet", offline=True)
    assert detector.name == "haar"
    (warning,) = caught
    assert warning.category is FerkitWarning
    assert "damaged" in str(warning.message) and "ferkit detector install" in str(warning.message)
    with pytest.raises(DetectorUnavailable):
        create_detector("yunet", offline=True, fallback=False)


def _ferkit(*arguments, environment):
    return subprocess.run([sys.executable, "-m", "ferkit", *map(str, arguments)],
                          capture_output=True, text=True, env=environment)  # fmt: skip


def test_cli_install_then_predict_uses_yunet_and_names_it(shared_yunet, tmp_path):
    from PIL import Image

    skimage_data = pytest.importorskip("skimage.data")
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("FERKIT_YUNET_MODEL",)}  # fmt: skip
    environment.update(FERKIT_CACHE_DIR=str(tmp_path / "cache"), FERKIT_OFFLINE="1")
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(photo)
    arguments = (photo, "--model", "small", "--json", "--no-progress")
    before = _ferkit("predict", *arguments, environment=environment)
    # Offline without the file: one clear warning, Haar runs and the output says so.
    assert before.returncode == 0 and "Traceback" not in before.stderr
    warning_lines = [line for line in before.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning_lines) == 1 and "ferkit detector install" in warning_lines[0]
    assert "detector: haar" in before.stderr
    record = __import__("json").loads(before.stdout)[0]
    assert record["detector"] == "haar" and record["faces"][0]["landmarks"] is None

    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(shared_yunet.read_bytes()[:-10])
    refused = _ferkit("detector", "install", damaged, environment=environment)
    assert refused.returncode == 2 and "expected" in refused.stderr
    assert "Traceback" not in refused.stderr
    installed = _ferkit("detector", "install", shared_yunet, environment=environment)
    assert installed.returncode == 0, installed.stderr
    after = _ferkit("predict", *arguments, environment=environment)
    assert after.returncode == 0 and "warning:" not in after.stderr
    record = __import__("json").loads(after.stdout)[0]
    assert record["detector"] == "yunet"
    (face,) = record["faces"]
    assert np.hypot(*(np.array(face["landmarks"]["right_eye"]) - (200, 102))) < 5


@pytest.mark.parametrize("command", [["predict", "photo.jpg"], ["serve"]])
def test_detector_options(command):
    from ferkit.cli import build_parser

    parser = build_parser()
    defaults = parser.parse_args(command)
    assert defaults.detector == "yunet" and not defaults.offline and not defaults.no_align
    chosen = parser.parse_args([*command, "--offline", "--no-align", "--detector", "haar"])
    assert chosen.offline and chosen.no_align and chosen.detector == "haar"


def test_install_takes_the_folder_holding_the_file_and_names_a_folder_without_it(
    cache, shared_yunet, tmp_path
):
    assert install_yunet_model(shared_yunet.parent) == cache / YUNET_FILE_NAME
    with pytest.raises(FerkitError, match=f"a folder without {YUNET_FILE_NAME}"):
        install_yunet_model(tmp_path)
