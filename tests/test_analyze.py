"""Tests for ferkit.inference.pipeline (``ferkit predict``): photos, folders, globs, videos,
outputs."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from ferkit.data import FER2013_CLASS_NAMES
from ferkit.inference.pipeline import analyze, expand_inputs
from ferkit.inference.results import annotate, write_csv
from ferkit.utils.errors import FerkitError

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def run_dir(tiny_run):
    return tiny_run


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(skimage_data.astronaut()).save(folder / "astronaut.png")
    (folder / "nested").mkdir()
    Image.fromarray(skimage_data.coffee()).save(folder / "nested" / "coffee.jpg")
    return folder


def test_expand_inputs_handles_files_folders_globs_and_misses(photos, tmp_path):
    files, errors = expand_inputs([photos])
    assert [path.name for path in files] == ["astronaut.png", "coffee.jpg"]  # recursive
    files, errors = expand_inputs([str(photos / "*.png"), photos / "nested" / "coffee.jpg"])
    assert [path.name for path in files] == ["astronaut.png", "coffee.jpg"] and errors == []
    (tmp_path / "empty").mkdir()
    files, errors = expand_inputs([tmp_path / "empty", tmp_path / "missing.png"])
    assert files == [] and len(errors) == 2
    assert "folder has no images" in errors[0] and "no such file" in errors[1]


def test_photos_give_one_result_per_image_and_a_box_per_face(photos, run_dir, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n broken")
    results, errors = analyze(
        [photos, broken], model=run_dir, save=tmp_path / "annotated", progress=False
    )
    by_name = {result.source.rsplit("/", 1)[-1]: result for result in results}
    assert set(by_name) == {"astronaut.png", "coffee.jpg"}
    assert len(errors) == 1 and str(broken) in errors[0]
    (face,) = by_name["astronaut.png"].faces
    assert 170 <= face.box.x <= 185 and 60 <= face.box.y <= 75 and face.box.score > 0
    assert face.label in FER2013_CLASS_NAMES
    assert sum(face.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert by_name["coffee.jpg"].faces == []  # no face: an empty result, not an error
    assert (by_name["astronaut.png"].width, by_name["astronaut.png"].height) == (512, 512)
    annotated = np.asarray(Image.open(tmp_path / "annotated" / "astronaut_annotated.png"))
    original = skimage_data.astronaut()
    assert annotated.shape == original.shape and not np.array_equal(annotated, original)
    write_csv(results, tmp_path / "faces.csv")
    rows = (tmp_path / "faces.csv").read_text().splitlines()
    assert len(rows) == 3  # header, one face, one "no face" row
    assert rows[0].split(",")[-7:] == list(FER2013_CLASS_NAMES)


def test_faces_from_many_images_match_one_by_one_prediction(photos, run_dir):
    from ferkit.inference.pipeline import Analyzer

    analyzer = Analyzer(run_dir, detector="haar")
    astronaut = skimage_data.astronaut()
    together = analyzer.analyze_images([astronaut, astronaut[:, ::-1].copy()], ["a", "b"])
    alone = analyzer.analyze_image(astronaut[:, ::-1].copy())
    assert together[1].faces[0].probabilities == pytest.approx(alone.faces[0].probabilities)


def test_video_gives_per_frame_results_with_timestamps(run_dir, tmp_path):
    astronaut = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (640, 512))
    for index in range(12):
        frame = np.full((512, 640, 3), 60, np.uint8)
        frame[:, index * 8 : index * 8 + 512] = astronaut  # the face moves right
        writer.write(frame)
    writer.release()
    results, errors = analyze(
        [video], model=run_dir, every=3, save=tmp_path / "out", progress=False
    )
    assert errors == []
    assert [result.frame for result in results] == [0, 3, 6, 9]
    assert [result.timestamp for result in results] == pytest.approx([0.0, 0.3, 0.6, 0.9])
    xs = [result.faces[0].box.x for result in results]
    assert xs == sorted(xs) and xs[-1] - xs[0] >= 50  # the box follows the face
    annotated = cv2.VideoCapture(str(tmp_path / "out" / "clip_annotated.mp4"))
    assert int(annotated.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    assert json.loads(json.dumps([result.to_dict() for result in results]))[1]["frame"] == 3


def test_corrupt_video_is_reported(run_dir, tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 100)
    results, errors = analyze([tmp_path / "bad.mp4"], model=run_dir, progress=False)
    assert results == [] and "not a readable video" in errors[0]


def test_bad_every_is_refused(run_dir, photos):
    with pytest.raises(FerkitError, match="--every 0"):
        analyze([photos], model=run_dir, every=0)


def test_annotate_keeps_the_image_size():
    assert annotate(np.zeros((40, 30, 3), np.uint8), []).shape == (40, 30, 3)


@pytest.mark.parametrize("name", ["default", "small", "fer2013", "fer2013-small"])
def test_bundled_models_find_the_smiling_astronaut_happy(tmp_path, monkeypatch, name):
    from ferkit.pretrained import available_bundled_models

    if name not in available_bundled_models():
        pytest.skip(f"this build ships no {name} model")
    monkeypatch.setenv("FERKIT_CACHE_DIR", str(tmp_path / "cache"))
    Image.fromarray(skimage_data.astronaut()).save(tmp_path / "astronaut.png")
    arguments = {} if name == "default" else {"model": name}  # --model defaults to default
    results, errors = analyze([tmp_path / "astronaut.png"], progress=False, **arguments)
    assert errors == []
    (face,) = results[0].faces
    assert face.label == "Happy" and face.score > 0.8


@pytest.mark.parametrize(("name", "classes"), [("small", 8), ("fer2013-small", 7)])
def test_bundled_small_models_keep_the_small_budget(name, classes):
    from ferkit.inference import Predictor
    from ferkit.models import model_cost
    from ferkit.pretrained import available_bundled_models

    if name not in available_bundled_models():
        pytest.skip(f"this build ships no {name} model")
    predictor = Predictor.from_run(name, device="cpu")
    assert model_cost(predictor.model)["mflops"] <= 25
    card = predictor.card
    assert card["class_names"] == list(predictor.class_names)
    assert len(card["class_names"]) == classes
    # The card documents its cost, recipe and what it scored on PublicTest.
    assert card["cost"]["mflops"] <= 25
    assert card["recipe"]["command"].startswith("ferkit train")
    assert (
        0.5 < card["evaluation"]["accuracy"] < 1
        and len(card["evaluation"]["per_class_recall"]) == classes
    )
