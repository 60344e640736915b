"""The web service: ``POST /v1/predict``, ``GET /v1/model``, ``GET /healthz`` and the page at ``/``.

The model and detector load once at start-up; each request is decoded, analysed and answered
in a worker thread, so the event loop never blocks on model work. Requests never touch the
server's files: images arrive in the request body and are decoded in memory.
"""

import io
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ferkit import __version__
from ferkit.inference.abstention import check_min_confidence
from ferkit.utils.errors import FerkitError

STATIC = Path(__file__).resolve().parent / "static"
#: Leading bytes of the image formats the service reads (a file that starts like one of these
#: but cannot be decoded is corrupt, 400; anything else is not an image, 415).
IMAGE_SIGNATURES = (b"\x89PNG", b"\xff\xd8", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")


@dataclass
class ServeConfig:
    """Settings of ``ferkit serve``."""

    model: str = "default"  # run folder, checkpoint, ensemble or bundled model name
    detector: str = "yunet"  # face detector: yunet (falls back to haar) | haar | haar-fast | none
    detector_model: str | None = None  # model file for the yunet detector
    offline: bool = False  # yunet without detector_model: never download the zoo model
    align: bool = True  # align faces from their landmarks (yunet) before classifying
    face_check: bool = True  # yunet: more candidates, false faces dropped (ferkit.faces.face_check)
    host: str = "127.0.0.1"  # interface to listen on
    port: int = 8000  # TCP port
    max_upload_mb: float = 10.0  # larger uploads get 413
    max_pixels: int = 4096 * 4096  # larger images are downscaled before analysis
    device: str = "auto"  # auto | cpu | cuda | mps
    backend: str = (
        "auto"  # inference engine: torch | onnx | bf16 | auto (ONNX Runtime if installed)
    )


class BadImage(Exception):
    """An upload that is not a usable image; carries the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


#: Formats uploads may have (Pillow would also hand EPS or PDF to external programs).
UPLOAD_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")


def decode_image(data: bytes, max_pixels: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Bytes → upright RGB/gray array (downscaled to at most ``max_pixels``), original size.

    Decoding goes through :func:`ferkit.data.preprocessing.image_to_array`, the decoder of files.

    Raises:
        BadImage: 400 for an empty or corrupt image, 413 for one with far too many pixels,
            415 for data in no supported image format.
    """
    from PIL import Image, UnidentifiedImageError

    from ferkit.data.preprocessing import image_to_array

    if not data:
        raise BadImage(400, "empty request: send an image file")
    try:
        image = Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS)
    except UnidentifiedImageError:
        if data.startswith(IMAGE_SIGNATURES) or data[8:12] == b"WEBP":
            raise BadImage(
                400, "corrupt image: it starts like an image but cannot be read"
            ) from None
        formats = ", ".join(UPLOAD_FORMATS)
        raise BadImage(415, f"not an image in a supported format ({formats})") from None
    except Image.DecompressionBombError as error:
        raise BadImage(413, f"image has too many pixels: {error}") from None
    except (OSError, ValueError) as error:
        raise BadImage(400, f"corrupt image: {error}") from None
    width, height = image.size
    # Refuse before decoding: a small compressed file can expand to gigabytes of pixels.
    if width * height > 4 * max_pixels:
        raise BadImage(
            413, f"image is {width}x{height} pixels; the limit is {4 * max_pixels:,} pixels"
        )
    # Clients see photos upright (EXIF orientation 5-8 swaps width and height).
    if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):
        width, height = height, width
    try:
        if width * height > max_pixels:
            shrink = (max_pixels / (width * height)) ** 0.5
            image.draft("RGB", (int(image.size[0] * shrink), int(image.size[1] * shrink)))
        array = image_to_array(image)
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise BadImage(400, f"corrupt image: {error}") from None
    if array.shape[0] * array.shape[1] > max_pixels:
        shrink = (max_pixels / (array.shape[0] * array.shape[1])) ** 0.5
        size = (max(1, int(array.shape[1] * shrink)), max(1, int(array.shape[0] * shrink)))
        array = np.asarray(Image.fromarray(array).resize(size, Image.BILINEAR))
    return array, (width, height)


def multipart_file(content_type: str, body: bytes) -> bytes:
    """The bytes of the ``file`` (or ``image``) part of a multipart/form-data body, in memory.

    Raises:
        BadImage: 400 when the body is not multipart or has no such part.
    """
    from email.parser import BytesParser
    from email.policy import HTTP

    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise BadImage(400, "bad multipart upload")
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") in ("file", "image"):
            return part.get_payload(decode=True) or b""
    raise BadImage(400, "multipart upload needs a file field named 'file'")


#: The OpenAPI description of an image upload (the routes read it with read_upload).
UPLOAD_BODY = {"requestBody": {"content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "file": {"type": "string", "format": "binary"}}}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
}}}  # fmt: skip


def error_response(status: int, message: str):
    """The service's error answer: ``{"error": message, "status": status}`` with that status."""
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": message, "status": status}, status_code=status)


async def read_upload(request, max_upload_mb: float) -> bytes:
    """The uploaded image's bytes, in memory, size-capped (raises BadImage)."""
    max_bytes = int(max_upload_mb * 1024 * 1024)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + 64 * 1024:
        raise BadImage(413, f"upload larger than {max_upload_mb:g} MB")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > max_bytes + 64 * 1024:
            raise BadImage(413, f"upload larger than {max_upload_mb:g} MB")
    data = bytes(data)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        data = multipart_file(content_type, data)
    if len(data) > max_bytes:
        raise BadImage(413, f"upload larger than {max_upload_mb:g} MB")
    return data


def create_app(config: ServeConfig | None = None, analyzer=None):
    """Build the FastAPI app (the model loads here, once).

    Example:
        >>> from fastapi.testclient import TestClient  # doctest: +SKIP
        >>> client = TestClient(create_app(ServeConfig(model="runs/demo")))  # doctest: +SKIP
        >>> client.get("/healthz").json()  # doctest: +SKIP
        {'status': 'ok'}
    """
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles

    from ferkit.evaluation.modelcard import format_model_card
    from ferkit.inference.int8 import backend_info
    from ferkit.inference.pipeline import Analyzer

    config = config or ServeConfig()
    analyzer = analyzer or Analyzer(
        config.model, config.detector, config.detector_model, device=config.device,
        backend=config.backend, offline=config.offline, align=config.align,
        face_check=config.face_check,
    )  # fmt: skip
    card = analyzer.predictor.card
    model_info = {
        "name": str(config.model),
        "architecture": card.get("architecture", card.get("format")),
        "class_names": list(analyzer.predictor.class_names),
        "ferkit_version": __version__,
        "detector": analyzer.detector_name,  # the one that runs (after any fallback)
        "face_check": analyzer.face_check is not None,  # YuNet's false faces dropped
        # Which engine runs and why (auto: INT8 on VNNI/AMX CPUs for the bundled models).
        "inference": backend_info(analyzer.predictor),
    }
    card_markdown = format_model_card(card, card.get("bundled_name") or str(config.model))

    app = FastAPI(
        title="ferkit",
        version=__version__,
        description="Facial expression recognition: faces and emotions in an uploaded image.",
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exception):  # noqa: ARG001
        return error_response(400, f"bad request: {exception.errors()}")

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html")

    @app.get("/healthz")
    async def health() -> dict:
        """Liveness: the model is loaded and the service answers."""
        return {"status": "ok"}

    @app.get("/v1/model")
    async def model() -> dict:
        """The model card of the served model: as JSON and as Markdown (``ferkit info``)."""
        return {"model": model_info, "card": card, "card_markdown": card_markdown}

    _add_predict_route(app, config, analyzer, model_info)
    _add_explain_route(app, config, analyzer)
    app.state.config = asdict(config)
    app.state.model_info = model_info
    return app


def _add_predict_route(app, config: ServeConfig, analyzer, model_info: dict) -> None:
    from fastapi import Request
    from fastapi.concurrency import run_in_threadpool

    @app.post("/v1/predict", openapi_extra=UPLOAD_BODY)
    async def predict(request: Request, min_confidence: float | None = None):
        """Faces and emotions in an image: multipart upload (field ``file``) or raw body.

        ``?min_confidence=0.6`` labels faces whose top probability is below 0.6 ``uncertain``
        (their probabilities are still given).
        """
        started = time.perf_counter()
        try:
            check_min_confidence(min_confidence)
        except FerkitError as bad:
            return error_response(400, str(bad))
        try:
            data = await read_upload(request, config.max_upload_mb)
        except BadImage as bad:
            return error_response(bad.status, bad.message)

        def work():
            image, original = decode_image(data, config.max_pixels)
            decoded = time.perf_counter()
            # Worker threads analyse concurrently: shared model, one detector per thread.
            result = analyzer.analyze_image(image, "upload", min_confidence)
            return image, original, result, decoded

        try:
            image, original, result, decoded = await run_in_threadpool(work)
        except BadImage as bad:
            return error_response(bad.status, bad.message)
        except FerkitError as bad:
            return error_response(400, str(bad))
        # Boxes come back in the uploaded image's pixels even when it was downscaled.
        faces = _faces_in_upload_pixels(result.faces, scale=original[0] / image.shape[1])
        finished = time.perf_counter()
        return {
            "image": {"width": original[0], "height": original[1]},
            "detector": result.detector,
            "faces": faces,
            "model": {
                "name": model_info["name"],
                "architecture": model_info["architecture"],
                "version": __version__,
            },  # fmt: skip
            "timing_ms": {
                "decode": round((decoded - started) * 1000, 2),
                "analyze": round((finished - decoded) * 1000, 2),
                "total": round((finished - started) * 1000, 2),
            },
        }


def _faces_in_upload_pixels(faces, scale: float) -> list[dict]:
    """The faces as JSON, their boxes and landmarks scaled back to the uploaded image's pixels."""
    entries = []
    for face in faces:
        entry = face.to_dict()
        if scale != 1.0:
            entry["box"].update({key: round(entry["box"][key] * scale)
                                 for key in ("x", "y", "width", "height")})  # fmt: skip
            for point in (entry["landmarks"] or {}).values():
                point[:] = [round(value * scale, 1) for value in point]
        entries.append(entry)
    return entries


def _add_explain_route(app, config: ServeConfig, analyzer) -> None:
    from fastapi import Request
    from fastapi.concurrency import run_in_threadpool

    @app.post("/v1/explain", openapi_extra=UPLOAD_BODY)
    async def explain(request: Request, method: str = "auto"):
        """Faces, emotions and where the model looked: per face a 48x48 map in [0, 1] over
        the square ``crop`` of the image the model saw, turned by ``crop.angle`` degrees
        (clockwise) for an aligned face (``method``: auto, gradcam, occlusion).
        """
        from ferkit.evaluation.explain import METHODS, explain_image

        started = time.perf_counter()
        if method not in METHODS:
            return error_response(400, f"method {method!r}: choose one of {', '.join(METHODS)}")
        try:
            data = await read_upload(request, config.max_upload_mb)
            image, original = await run_in_threadpool(decode_image, data, config.max_pixels)
            explanations = await run_in_threadpool(explain_image, analyzer, image, method, "upload")
        except BadImage as bad:
            return error_response(bad.status, bad.message)
        except FerkitError as bad:
            return error_response(400, str(bad))
        scale = original[0] / image.shape[1]  # back to the uploaded image's pixels
        faces = []
        for explanation in explanations:
            entry = explanation.to_dict(decimals=3)
            entry.pop("raw")
            entry.pop("source")
            for part in ("box", "crop"):
                entry[part].update({key: round(value * scale, 1 if part == "crop" else None)
                                    for key, value in entry[part].items()
                                    if key not in ("score", "angle")})  # fmt: skip
            for point in (entry["landmarks"] or {}).values():
                point[:] = [round(value * scale, 1) for value in point]
            faces.append(entry)
        total = round((time.perf_counter() - started) * 1000, 2)
        return {"image": {"width": original[0], "height": original[1]}, "faces": faces,
                "detector": analyzer.detector_name, "timing_ms": {"total": total}}  # fmt: skip


def serve(config: ServeConfig) -> None:
    """Run the service with uvicorn until interrupted (``ferkit serve``'s twin)."""
    import uvicorn

    app = create_app(config)
    info = app.state.model_info
    check = ", face check on" if info["face_check"] else ""
    print(f"ferkit serving {config.model} (detector: {info['detector']}{check}) on "
          f"http://{config.host}:{config.port}/ (docs: /docs)")  # fmt: skip
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning")
