"""Tests for ferkit.serving: the API with FastAPI's test client, on real photos and bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ferkit.data import FER2013_CLASS_NAMES

pytest.importorskip("fastapi")
skimage_data = pytest.importorskip("skimage.data")

from fastapi.testclient import TestClient  # noqa: E402

from ferkit.serving import ServeConfig, create_app  # noqa: E402


@pytest.fixture(scope="module")
def client(tiny_run):
    config = ServeConfig(model=str(tiny_run), max_upload_mb=1.0, max_pixels=800 * 800)
    return TestClient(create_app(config))


def png_bytes(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(array, quality=90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def test_health_model_docs_and_page(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    info = client.get("/v1/model").json()
    assert info["model"]["class_names"] == list(FER2013_CLASS_NAMES)
    assert info["card"]["architecture"] == "classic"
    # which engine runs, and why (a run folder under auto: ONNX Runtime fp32 or PyTorch)
    assert info["model"]["inference"]["backend"] in ("onnx", "torch")
    assert info["model"]["inference"]["reason"].startswith("auto: ")
    assert client.get("/docs").status_code == 200
    assert "/v1/predict" in client.get("/openapi.json").json()["paths"]
    page = client.get("/")
    assert page.status_code == 200 and "getUserMedia" in client.get("/static/app.js").text
    assert "<canvas" in page.text


def test_predict_multipart_and_raw_body_on_the_astronaut(client):
    astronaut = jpeg_bytes(skimage_data.astronaut())
    multipart = client.post("/v1/predict", files={"file": ("a.jpg", astronaut, "image/jpeg")})
    raw = client.post("/v1/predict", content=astronaut,
                      headers={"content-type": "application/octet-stream"})  # fmt: skip
    for response in (multipart, raw):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["image"] == {"width": 512, "height": 512}
        (face,) = body["faces"]
        assert 170 <= face["box"]["x"] <= 185 and face["box"]["score"] > 0
        assert face["emotion"] in FER2013_CLASS_NAMES
        assert sum(face["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert body["model"]["version"] and body["timing_ms"]["total"] > 0
    assert multipart.json()["faces"] == raw.json()["faces"]


def test_no_face_is_an_empty_list(client):
    response = client.post("/v1/predict", content=jpeg_bytes(skimage_data.coffee()))
    assert response.status_code == 200 and response.json()["faces"] == []


def test_large_images_are_downscaled_and_boxes_mapped_back(client):
    big = np.asarray(Image.fromarray(skimage_data.astronaut()).resize((1024, 1024)))
    response = client.post("/v1/predict", content=jpeg_bytes(big, 80))
    body = response.json()
    assert body["image"] == {"width": 1024, "height": 1024}
    face = body["faces"][0]  # the largest face first (small false positives may follow)
    assert 340 <= face["box"]["x"] <= 375 and 180 <= face["box"]["width"] <= 210


@pytest.mark.parametrize(
    "payload, status, fragment",
    [
        (b"", 400, "empty"),
        (b"hello, I am not an image", 415, "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, 400, "corrupt"),
    ],
)
def test_bad_uploads_get_clear_json_errors(client, payload, status, fragment):
    for response in (
        client.post("/v1/predict", content=payload),
        client.post("/v1/predict", files={"file": ("x.png", payload, "image/png")}),
    ):
        assert response.status_code == status, response.text
        assert fragment in response.json()["error"]


def test_truncated_jpeg_is_400(client):
    data = jpeg_bytes(skimage_data.astronaut())
    response = client.post("/v1/predict", content=data[: len(data) // 2])
    assert response.status_code == 400 and "corrupt" in response.json()["error"]


def test_oversized_upload_is_413(client):
    noise = np.random.default_rng(0).integers(0, 256, (800, 800, 3), dtype=np.uint8)
    data = png_bytes(noise)
    assert len(data) > 1024 * 1024
    assert client.post("/v1/predict", content=data).status_code == 413
    multipart = client.post("/v1/predict", files={"file": ("n.png", data, "image/png")})
    assert multipart.status_code == 413


def test_multipart_without_a_file_field_is_400(client):
    response = client.post("/v1/predict", files={"note": (None, "no file")})
    assert response.status_code == 400 and "'file'" in response.json()["error"]


def test_unknown_routes_and_methods_are_not_500(client):
    assert client.get("/v1/predict").status_code == 405
    assert client.get("/../../etc/passwd").status_code == 404
    # an encoded "../" must not escape the static folder
    assert client.get("/static/%2e%2e/app.py").status_code == 404
    assert client.get("/static/..%2fapp.py").status_code == 404


def test_decompression_bomb_and_huge_images_are_refused_not_500(client):
    # A 14000x14000 PNG compresses to a few hundred KB but would decode to 588 MB.
    import zlib

    width = height = 14000
    raw = b"".join(b"\x00" + b"\x00" * width for _ in range(height))
    chunk = lambda kind, data: (  # noqa: E731
        len(data).to_bytes(4, "big") + kind + data
        + zlib.crc32(kind + data).to_bytes(4, "big")
    )  # fmt: skip
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9))
    png += chunk(b"IEND", b"")
    assert len(png) < 1024 * 1024
    response = client.post("/v1/predict", content=png)
    assert response.status_code == 413 and "pixels" in response.json()["error"]


def test_exif_rotated_photo_is_read_upright(client):
    astronaut = skimage_data.astronaut()
    rotated = np.ascontiguousarray(np.rot90(astronaut, k=1))  # stored sideways, like a phone
    image = Image.fromarray(rotated)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90, exif=exif)
    body = client.post("/v1/predict", content=buffer.getvalue()).json()
    assert body["image"] == {"width": 512, "height": 512}
    assert len(body["faces"]) == 1 and 170 <= body["faces"][0]["box"]["x"] <= 185


def test_alpha_and_16_bit_images(client):
    rgba = np.dstack([skimage_data.astronaut(), np.full((512, 512), 255, np.uint8)])
    assert len(client.post("/v1/predict", content=png_bytes(rgba)).json()["faces"]) == 1
    gray16 = (skimage_data.astronaut().mean(axis=2) * 257).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(gray16).save(buffer, format="PNG")
    assert len(client.post("/v1/predict", content=buffer.getvalue()).json()["faces"]) == 1


def test_chunked_upload_over_the_limit_is_413(client):
    def chunks():
        for _ in range(40):
            yield b"\x00" * 64 * 1024  # 2.5 MB in total, no Content-Length

    response = client.post("/v1/predict", content=chunks())
    assert response.status_code == 413


def test_other_formats_are_refused(client):
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    assert client.post("/v1/predict", content=eps).status_code == 415


def test_the_detector_is_named_and_landmarks_map_back_to_the_upload(client):
    from conftest import SHARED_YUNET

    detector = "yunet" if SHARED_YUNET.is_file() else "haar"  # Haar: the offline fallback
    model = client.get("/v1/model").json()["model"]
    # The face check runs with YuNet only (it reads crops aligned from YuNet's landmarks).
    assert model["detector"] == detector and model["face_check"] == (detector == "yunet")
    small = client.post("/v1/predict", content=png_bytes(skimage_data.astronaut())).json()
    big = np.asarray(Image.fromarray(skimage_data.astronaut()).resize((1024, 1024)))
    large = client.post("/v1/predict", content=jpeg_bytes(big)).json()  # downscaled to 800
    assert small["detector"] == large["detector"] == detector
    if detector == "yunet":
        right_eye = np.array(small["faces"][0]["landmarks"]["right_eye"])
        assert np.hypot(*(right_eye - (200, 102))) < 5
        mapped = np.array(large["faces"][0]["landmarks"]["right_eye"])
        assert np.hypot(*(mapped - 2 * right_eye)) < 8  # in the uploaded image's pixels


def test_the_pages_webcam_labels_are_smoothed_per_face(tmp_path):
    """Runs the page's smoothing code (between its markers in app.js) in Node."""
    import json
    import shutil
    import subprocess
    from pathlib import Path

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    source = (Path(create_app.__code__.co_filename).parent / "static" / "app.js").read_text()
    code = source[source.index("// smoothing: start") : source.index("// smoothing: end")]

    def face(x, happy):
        box = {"x": x, "y": 10, "width": 50, "height": 50}
        probabilities = {"happy": happy, "sad": 1 - happy}
        return {"box": box, "emotion": "?", "emotion_score": 0, "probabilities": probabilities}

    frames = [[face(10, 0.9), face(200, 0.2)], [face(14, 0.2), face(204, 0.2)],
              [face(18, 0.2)], [face(300, 0.5)]]  # fmt: skip
    script = (
        code
        + f"""
const out = {json.dumps(frames)}.map((faces) => smoothFaces({{faces}}).faces.map(
  (f) => [f.track, f.emotion, Math.round(f.probabilities.happy * 1000) / 1000]));
console.log(JSON.stringify(out));"""
    )
    result = subprocess.run([node, "-e", script], capture_output=True, text=True, check=True)
    frame_1, frame_2, frame_3, frame_4 = json.loads(result.stdout)
    assert frame_1 == [[1, "happy", 0.9], [2, "sad", 0.2]]
    # Face 1 turns sad for one frame: smoothed 0.6 * 0.9 + 0.4 * 0.2 = 0.62, still happy.
    assert frame_2 == [[1, "happy", 0.62], [2, "sad", 0.2]]
    assert frame_3 == [[1, "sad", 0.452]]
    assert frame_4 == [[3, "sad", 0.5]] or frame_4 == [[3, "happy", 0.5]]  # a new person
