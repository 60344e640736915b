"""The YuNet face detector's model file: lookup, one-time download, checksum, install.

``resolve_yunet_model`` finds the file in this order:

1. a path given by the caller (``--detector-model PATH``; any YuNet version, not hash-checked);
2. the ``$FERKIT_YUNET_MODEL`` environment variable (a path, same rules);
3. the user cache, ``<cache>/models/face_detection_yunet_2023mar.onnx`` (``<cache>`` is
   ``$FERKIT_CACHE_DIR``, else ``~/.cache/ferkit``), checked against the pinned SHA-256;
4. a one-time download of OpenCV zoo's file into the cache (progress bar, SHA-256 checked),
   unless the caller is offline (``--offline``, ``offline=True`` or ``$FERKIT_OFFLINE=1``).

When steps 3-4 cannot give a checked file, :class:`DetectorUnavailable` says why and how to
install one: ``ferkit detector install FILE`` (:func:`install_yunet_model`) copies a file into
the cache after checking its SHA-256.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import urllib.request
from pathlib import Path

from ferkit.utils.errors import FerkitError

#: OpenCV zoo's YuNet model, the default detector's file.
YUNET_FILE_NAME = "face_detection_yunet_2023mar.onnx"
YUNET_URL = (
    "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/" + YUNET_FILE_NAME
)
# Pinned because the URL follows a branch: a changed or damaged file must never be loaded.
# Provenance: the digest of the 232,589-byte file that OpenCV's zoo publishes, pinned alike by
# unrelated projects (alchemyface 1.2.0, detekface 0.1.0, moca-face-matcher 0.2.2,
# unicorner-face-detector 0.1.0) and equal to ../shared/models' copy from the authors' repository.
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
#: Environment variable naming a YuNet ONNX file to use (step 2 of the lookup).
YUNET_MODEL_VARIABLE = "FERKIT_YUNET_MODEL"
#: Environment variable that, set to ``1`` (or true/yes/on), forbids the download.
OFFLINE_VARIABLE = "FERKIT_OFFLINE"
#: Seconds without an answer before the download gives up.
DOWNLOAD_TIMEOUT = 60


class DetectorUnavailable(FerkitError):
    """The YuNet file is neither given, cached nor downloadable (callers may fall back)."""


def is_offline(offline: bool = False) -> bool:
    """Whether downloads are forbidden: asked for, or ``$FERKIT_OFFLINE`` set to 1/true/yes/on.

    Example:
        >>> is_offline(True)
        True
    """
    value = os.environ.get(OFFLINE_VARIABLE, "").strip().lower()
    return offline or value in ("1", "true", "yes", "on")


def yunet_cache_path() -> Path:
    """Where the checked YuNet file lives in the user cache.

    Example:
        >>> yunet_cache_path().name
        'face_detection_yunet_2023mar.onnx'
    """
    from ferkit.data.cache import default_cache_dir

    return default_cache_dir() / "models" / YUNET_FILE_NAME


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes.

    Example:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "a"; _ = f.write_bytes(b"")
        >>> file_sha256(f)[:12]
        'e3b0c44298fc'
    """
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def how_to_install() -> str:
    """The one-line advice every 'YuNet unavailable' message ends with."""
    return (
        f"to install it, download {YUNET_URL} and run `ferkit detector install "
        f"{YUNET_FILE_NAME}` (checks its SHA-256 and copies it to {yunet_cache_path()}), or "
        f"pass --detector-model PATH / set {YUNET_MODEL_VARIABLE}=PATH"
    )


def _download(target: Path, progress: bool) -> Path:
    """Stream :data:`YUNET_URL` to a temporary file beside ``target``, check it, rename it."""
    from tqdm import tqdm

    from ferkit.utils.io import atomic_write

    def write(temporary: str) -> None:
        digest = hashlib.sha256()
        try:
            with (
                urllib.request.urlopen(YUNET_URL, timeout=DOWNLOAD_TIMEOUT) as response,
                open(temporary, "wb") as handle,
                tqdm(
                    total=int(response.headers.get("Content-Length") or 0) or None,
                    unit="B", unit_scale=True, desc=f"downloading {YUNET_FILE_NAME}",
                    disable=not progress, file=sys.stderr, leave=False,
                ) as bar,
            ):  # fmt: skip
                while block := response.read(1 << 16):
                    digest.update(block)
                    handle.write(block)
                    bar.update(len(block))
        except (OSError, http.client.HTTPException) as error:  # URLError is an OSError
            raise DetectorUnavailable(
                f"could not download the YuNet face detector from {YUNET_URL} ({error}); "
                + how_to_install()
            ) from error
        if digest.hexdigest() != YUNET_SHA256:
            # atomic_write deletes the temporary file: nothing unchecked stays in the cache.
            raise DetectorUnavailable(
                f"{YUNET_URL}: downloaded file has SHA-256 {digest.hexdigest()}, expected "
                f"{YUNET_SHA256}; it was not kept. Try again later, or " + how_to_install()
            )

    try:
        return atomic_write(target, write)
    except OSError as error:  # the cache folder cannot be created or written
        raise DetectorUnavailable(
            f"could not save the YuNet face detector in {target.parent} ({error}); "
            + how_to_install()
        ) from error


def yunet_model_path(offline: bool = False, progress: bool = True) -> Path:
    """OpenCV zoo's YuNet file from the user cache, downloaded there first unless offline.

    The cached file is checked against :data:`YUNET_SHA256` before every use (a 232 KB hash,
    about a millisecond), so a damaged or replaced file is never loaded.

    Args:
        offline: never download (``$FERKIT_OFFLINE=1`` does the same).
        progress: show a progress bar while downloading.

    Raises:
        DetectorUnavailable: the file is missing or damaged and cannot be downloaded.

    Example:
        >>> yunet_model_path(offline=True)  # doctest: +SKIP
        PosixPath('/home/me/.cache/ferkit/models/face_detection_yunet_2023mar.onnx')
    """
    target = yunet_cache_path()
    problem = f"{target} not found"
    if target.is_file():
        actual = file_sha256(target)
        if actual == YUNET_SHA256:
            return target
        problem = f"{target} has SHA-256 {actual}, expected {YUNET_SHA256} (damaged or replaced)"
    if not is_offline(offline):
        try:
            return _download(target, progress)
        except DetectorUnavailable as error:
            if target.is_file():  # say why the cached file was not used, too
                raise DetectorUnavailable(f"{problem}; {error}") from error
            raise
    raise DetectorUnavailable(
        f"the YuNet face detector {YUNET_FILE_NAME} is not available: {problem}, and downloads "
        f"are off (--offline or {OFFLINE_VARIABLE}=1); " + how_to_install()
    )


def resolve_yunet_model(
    model_path: str | os.PathLike | None = None, offline: bool = False, progress: bool = True
) -> Path:
    """The YuNet file to load: ``model_path``, ``$FERKIT_YUNET_MODEL``, the cache, a download.

    Raises:
        FerkitError: a given path (argument or environment variable) is not a file: the
            user's mistake, reported as such.
        DetectorUnavailable: nothing given, and the cache/download cannot give a checked file.

    Example:
        >>> resolve_yunet_model("/nonexistent.onnx")
        Traceback (most recent call last):
        ...
        ferkit.utils.errors.FerkitError: --detector-model /nonexistent.onnx: no such file
    """
    given = ((model_path, "--detector-model"),
             (os.environ.get(YUNET_MODEL_VARIABLE), YUNET_MODEL_VARIABLE))  # fmt: skip
    for value, origin in given:
        if value is not None and str(value) != "":
            if not Path(value).is_file():
                raise FerkitError(f"{origin} {value}: no such file")
            return Path(value)
    return yunet_model_path(offline, progress)


def install_yunet_model(source: str | os.PathLike) -> Path:
    """Copy a YuNet file into the user cache after checking its SHA-256 (``ferkit detector
    install``'s twin). The copy is atomic: a failed install leaves no partial file.

    Raises:
        FerkitError: ``source`` is missing or is not the pinned file (damaged, another version).

    Example:
        >>> install_yunet_model("face_detection_yunet_2023mar.onnx")  # doctest: +SKIP
        PosixPath('/home/me/.cache/ferkit/models/face_detection_yunet_2023mar.onnx')
    """
    from ferkit.utils.io import atomic_write

    source = Path(source)
    if source.is_dir() and (source / YUNET_FILE_NAME).is_file():
        source = source / YUNET_FILE_NAME  # the folder it was downloaded into
    elif source.is_dir():
        raise FerkitError(f"{source}: a folder without {YUNET_FILE_NAME}; give the file itself")
    if not source.is_file():
        raise FerkitError(f"{source}: no such file")
    actual = file_sha256(source)
    if actual != YUNET_SHA256:
        raise FerkitError(
            f"{source}: SHA-256 {actual}, expected {YUNET_SHA256} ({YUNET_FILE_NAME} from "
            f"{YUNET_URL}); the file is damaged or another version, not installed (another "
            "YuNet version can still be used with --detector-model PATH)"
        )
    return atomic_write(yunet_cache_path(), lambda temporary: shutil.copyfile(source, temporary))
