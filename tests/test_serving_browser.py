"""Browser tests of ``ferkit serve``'s page: Playwright driving headless Debian Chromium.

Skipped when Playwright or /usr/bin/chromium is missing (``make test`` installs both on
Debian). The webcam test feeds Chromium's fake camera with a video made here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

playwright_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("uvicorn")
skimage_data = pytest.importorskip("skimage.data")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("Debian chromium is not installed", allow_module_level=True)

from ferkit.serving import ServeConfig, create_app  # noqa: E402

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def model_location(request):
    """The bundled model when this build ships one, else a small random model."""
    from ferkit.pretrained import available_bundled_models

    if "default" in available_bundled_models():
        return "default"
    return str(request.getfixturevalue("tiny_run"))


@pytest.fixture(scope="module")
def server(model_location):
    import uvicorn

    port = free_port()
    app = create_app(ServeConfig(model=model_location, port=port))
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not instance.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert instance.started, "server did not start"
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(timeout=10)


def fake_camera_video(path: Path, frames: int = 20) -> Path:
    """A Y4M video (Chromium's fake-camera format) of the astronaut photo."""
    rgb = cv2.resize(skimage_data.astronaut(), (320, 320))
    yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
    with open(path, "wb") as handle:
        handle.write(b"YUV4MPEG2 W320 H320 F10:1 Ip A1:1 C420jpeg\n")
        for _ in range(frames):
            handle.write(b"FRAME\n" + yuv.tobytes())
    return path


def expected_emotion(server_url: str, image: np.ndarray) -> str:
    import io

    import httpx
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    body = httpx.post(f"{server_url}/v1/predict", content=buffer.getvalue(), timeout=30).json()
    return body["faces"][0]["emotion"].lower()


def test_upload_a_photo_and_see_the_face_and_its_label(server, model_location, tmp_path):
    from PIL import Image

    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(photo)
    emotion = expected_emotion(server, skimage_data.astronaut())
    if model_location == "default":
        assert emotion == "happy"  # the bundled model on a smiling face
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1000, "height": 1100})
        page.goto(server)
        page.set_input_files("#file", str(photo))
        page.wait_for_selector("#faces li", timeout=30_000)
        items = page.locator("#faces li")
        assert items.count() == 1
        assert items.first.get_attribute("data-emotion") == emotion
        assert "1 face(s) found" in page.inner_text("#message")
        # The canvas shows the photo with a green box drawn on it: sample the box's edge.
        pixel = page.evaluate(
            """() => {
                const canvas = document.getElementById('canvas');
                const context = canvas.getContext('2d');
                const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
                let green = 0;
                for (let i = 0; i < data.length; i += 4)
                    if (data[i] === 0x22 && data[i + 1] === 0xaa && data[i + 2] === 0x77) green++;
                return {green, width: canvas.width};
            }"""
        )
        assert pixel["width"] == 512 and pixel["green"] > 500
        from conftest import SHARED_YUNET

        if SHARED_YUNET.is_file():  # the page runs with YuNet, the default detector, and says so
            page.wait_for_function("document.getElementById('model').textContent.includes('yunet')")
        screenshot = tmp_path / "serve.png"
        page.screenshot(path=str(screenshot), full_page=True)
        if os.environ.get("FERKIT_SCREENSHOT_DIR"):
            target = Path(os.environ["FERKIT_SCREENSHOT_DIR"]) / "serve_page.png"
            shutil.copyfile(screenshot, target)
        browser.close()


def test_a_file_that_is_no_image_shows_a_message(server, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.goto(server)
        page.set_input_files("#file", str(text))
        page.wait_for_function(
            "document.getElementById('message').textContent.includes('Could not analyse')",
            timeout=30_000,
        )
        browser.close()


def test_webcam_mode_shows_live_results(server, tmp_path):
    video = fake_camera_video(tmp_path / "camera.y4m")
    flags = CHROMIUM_FLAGS + [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={video}",
    ]
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=flags)
        context = browser.new_context()
        context.grant_permissions(["camera"], origin=server)
        page = context.new_page()
        page.goto(server)
        page.click("#mode-webcam")
        page.click("#start")
        page.wait_for_selector("#faces li", timeout=30_000)
        page.wait_for_function(
            "document.getElementById('message').textContent.includes('face(s) found')",
            timeout=30_000,
        )
        # Webcam labels come from tracks (smoothed over frames): the one face is person 1.
        assert page.locator("#faces li").first.get_attribute("data-track") == "1"
        assert "Person 1" in page.inner_text("#faces")
        page.click("#stop")
        assert "stopped" in page.inner_text("#message")
        browser.close()


def test_refused_camera_shows_a_message(server):
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page()  # no fake device and no permission: getUserMedia fails
        page.goto(server)
        page.click("#mode-webcam")
        page.click("#start")
        page.wait_for_function(
            "document.getElementById('message').textContent.includes('Camera not available')",
            timeout=30_000,
        )
        browser.close()


# Compares the canvas now with the snapshot taken before the explanation was turned on, inside
# the face's box (away from its edges and label) and outside the square crop the map covers.
CANVAS_CHANGES = """([crop, box]) => {
    const canvas = document.getElementById('canvas');
    const now = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    const before = window.plainCanvas;
    const inside = (x, y, left, top, width, height) =>
        x >= left && x < left + width && y >= top && y < top + height;
    // In the crop square, turned by crop.angle (clockwise) about its centre; 1.5 px of
    // anti-aliased edge allowed.
    const centreX = crop.x + crop.side / 2, centreY = crop.y + crop.side / 2;
    const turn = -(crop.angle || 0) * Math.PI / 180, half = crop.side / 2 + 1.5;
    const inCrop = (x, y) => {
        const dx = x + 0.5 - centreX, dy = y + 0.5 - centreY;
        return Math.abs(dx * Math.cos(turn) - dy * Math.sin(turn)) <= half
            && Math.abs(dx * Math.sin(turn) + dy * Math.cos(turn)) <= half;
    };
    let face = 0, facePixels = 0, outside = 0, changed = 0;
    for (let y = 0; y < canvas.height; y++) for (let x = 0; x < canvas.width; x++) {
        const i = 4 * (y * canvas.width + x);
        const change = Math.abs(now[i] - before[i]) + Math.abs(now[i + 1] - before[i + 1])
            + Math.abs(now[i + 2] - before[i + 2]);
        if (inside(x, y, box.x + box.width / 4, box.y + box.height / 4, box.width / 2,
                   box.height / 2)) {
            face += change; facePixels += 1;
            if (change > 15) changed += 1;
        } else if (!inCrop(x, y) && change > 0) outside += 1;
    }
    return {faceChange: face / facePixels / 3, changed: changed / facePixels, outside,
            width: canvas.width};
}"""


FACES_FOUND = "document.getElementById('message').textContent.includes('face(s) found')"


@contextlib.contextmanager
def photo_page(server_url: str, tmp_path: Path):
    """A page showing the astronaut's faces, its canvas kept as ``window.plainCanvas``."""
    from PIL import Image

    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(photo)
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1000, "height": 1100})
        page.goto(server_url)
        with page.expect_response(lambda response: "/v1/predict" in response.url) as plain:
            page.set_input_files("#file", str(photo))
        assert plain.value.status == 200
        page.wait_for_function(FACES_FOUND, timeout=30_000)
        page.evaluate("""() => { const canvas = document.getElementById('canvas');
            window.plainCanvas = canvas.getContext('2d')
                .getImageData(0, 0, canvas.width, canvas.height).data; }""")
        yield page
        browser.close()


def test_the_explain_toggle_overlays_the_map_on_the_face_and_removes_it(server, tmp_path):
    with photo_page(server, tmp_path) as page:
        with page.expect_response(lambda response: "/v1/explain" in response.url) as explained:
            page.check("#explain")
        assert explained.value.status == 200
        (face,) = explained.value.json()["faces"]
        saliency = np.array(face["saliency"])
        assert saliency.shape == (48, 48) and saliency.min() >= 0 and saliency.max() == 1
        page.wait_for_function(FACES_FOUND, timeout=60_000)
        assert page.locator("#faces li").count() == 1
        shown = page.evaluate(CANVAS_CHANGES, [face["crop"], face["box"]])
        assert shown["width"] == 512
        # The heat map covers the face: (nearly) every pixel of its middle changes, by a lot,
        assert shown["faceChange"] > 15 and shown["changed"] > 0.9, shown
        # and nothing outside the square crop it was computed on changes.
        assert shown["outside"] == 0, shown

        with page.expect_response(lambda response: "/v1/predict" in response.url) as again:
            page.uncheck("#explain")
        assert again.value.status == 200
        page.wait_for_function(FACES_FOUND, timeout=30_000)
        cleared = page.evaluate(CANVAS_CHANGES, [face["crop"], face["box"]])
        assert cleared["faceChange"] == 0 and cleared["outside"] == 0, cleared


def test_turning_the_toggle_off_before_the_map_arrives_shows_no_map(server, tmp_path):
    """The answer to an older request (the map, slower than a prediction) is not drawn."""
    with photo_page(server, tmp_path) as page:
        with page.expect_response(lambda response: "/v1/explain" in response.url) as explained:
            page.check("#explain")
            page.uncheck("#explain")
        (face,) = explained.value.json()["faces"]
        page.wait_for_function(FACES_FOUND, timeout=30_000)
        page.wait_for_timeout(500)  # time to draw the late answer, were it drawn
        shown = page.evaluate(CANVAS_CHANGES, [face["crop"], face["box"]])
        assert shown["faceChange"] == 0 and shown["outside"] == 0, shown
