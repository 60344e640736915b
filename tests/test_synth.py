"""Tests for ferkit.data.synth: procedurally drawn FER2013-style faces."""

from __future__ import annotations

import numpy as np
import pytest

from ferkit.data.dataset import FACE_SIZE, FER2013_CLASS_NAMES, FER2013_USAGES, FerDataset
from ferkit.data.synth import generate_faces, make_synthetic_dataset

NUM_CLASSES = len(FER2013_CLASS_NAMES)


@pytest.fixture(scope="module")
def dataset() -> FerDataset:
    # One default-sized dataset (~1.5 s to draw) shared by the statistical tests below.
    return make_synthetic_dataset(n=3500, seed=0)


def test_shapes_and_dtypes():
    images, labels = generate_faces(20, seed=0)
    assert images.shape == (20, FACE_SIZE, FACE_SIZE)
    assert images.dtype == np.uint8
    assert labels.shape == (20,)
    assert labels.dtype == np.int64
    assert labels.min() >= 0 and labels.max() < NUM_CLASSES


def test_zero_faces():
    images, labels = generate_faces(0)
    assert images.shape == (0, FACE_SIZE, FACE_SIZE) and labels.shape == (0,)


def test_negative_count_is_rejected():
    with pytest.raises(ValueError):
        generate_faces(-1)


def test_same_seed_is_byte_identical():
    first_images, first_labels = generate_faces(30, seed=7)
    second_images, second_labels = generate_faces(30, seed=7)
    assert first_images.tobytes() == second_images.tobytes()
    assert np.array_equal(first_labels, second_labels)


def test_different_seeds_differ():
    first_images, first_labels = generate_faces(30, seed=1)
    second_images, second_labels = generate_faces(30, seed=2)
    assert not np.array_equal(first_images, second_images)
    assert not np.array_equal(first_labels, second_labels)


def test_does_not_touch_global_rng():
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    generate_faces(5, seed=0)
    assert np.random.random() == expected


def test_classes_balanced_with_remainder_on_first_classes():
    _, labels = generate_faces(7 * 3 + 4, seed=0)
    assert np.bincount(labels, minlength=NUM_CLASSES).tolist() == [4, 4, 4, 4, 3, 3, 3]


def test_rows_are_shuffled(dataset):
    # Labels must not come in class blocks; count label changes between consecutive rows.
    changes = np.count_nonzero(np.diff(dataset.labels))
    assert changes > len(dataset) // 2


def test_dataset_metadata(dataset):
    assert isinstance(dataset, FerDataset)
    assert dataset.class_names == FER2013_CLASS_NAMES
    assert dataset.source == "synthetic(n=3500, seed=0)"
    assert list(dataset.class_counts().values()) == [500] * NUM_CLASSES
    assert set(dataset.usage.tolist()) == set(FER2013_USAGES)


def test_usage_is_stratified_in_default_fractions(dataset):
    for label in range(NUM_CLASSES):
        usage = dataset.usage[dataset.labels == label]
        counts = [int(np.sum(usage == name)) for name in FER2013_USAGES]
        assert counts == [400, 50, 50], FER2013_CLASS_NAMES[label]


def test_usage_custom_fractions():
    dataset = make_synthetic_dataset(n=140, seed=3, usage_fractions=(0.6, 0.2, 0.2))
    for label in range(NUM_CLASSES):
        usage = dataset.usage[dataset.labels == label]
        assert [int(np.sum(usage == name)) for name in FER2013_USAGES] == [12, 4, 4]


def test_usage_is_deterministic():
    first = make_synthetic_dataset(n=70, seed=4)
    second = make_synthetic_dataset(n=70, seed=4)
    assert np.array_equal(first.usage, second.usage)
    assert first.images.tobytes() == second.images.tobytes()


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.8, 0.3, 0.1), (1.2, -0.1, -0.1)])
def test_bad_usage_fractions_are_rejected(fractions):
    with pytest.raises(ValueError):
        make_synthetic_dataset(n=14, usage_fractions=fractions)


def test_no_duplicate_images(dataset):
    unique_images = np.unique(dataset.images.reshape(len(dataset), -1), axis=0)
    assert len(unique_images) == len(dataset)


def test_images_use_a_real_intensity_range(dataset):
    flat = dataset.images.reshape(len(dataset), -1).astype(np.float64)
    # Every face has visible structure: a wide spread of gray levels, not a flat image.
    assert (flat.max(axis=1) - flat.min(axis=1)).min() >= 50
    assert flat.std(axis=1).min() >= 8
    # And the data set as a whole covers most of the 8-bit range without being saturated.
    assert flat.min() <= 20 and flat.max() >= 235
    assert 60 <= flat.mean() <= 190


def test_class_mean_images_differ(dataset):
    # Remove each face's overall brightness so the class means reflect the drawn geometry.
    flat = dataset.images.reshape(len(dataset), -1).astype(np.float64)
    flat -= flat.mean(axis=1, keepdims=True)
    training = dataset.usage == "Training"
    class_means = np.stack(
        [flat[training & (dataset.labels == label)].mean(axis=0) for label in range(NUM_CLASSES)]
    )
    # Mean absolute difference in gray levels between every pair of class-mean images. Measured
    # minimum (Sad vs Neutral, whose cues are local and blurred by the pose jitter) is ~2.2-2.6.
    differences = np.abs(class_means[:, None] - class_means[None]).mean(axis=-1)
    assert differences[~np.eye(NUM_CLASSES, dtype=bool)].min() > 1.0
    # The means are informative: nearest-class-mean on held-out faces beats chance (1/7) clearly.
    # Measured 0.33-0.40 over seeds 0-3.
    held_out = ~training
    distances = ((flat[held_out][:, None] - class_means[None]) ** 2).sum(axis=-1)
    accuracy = np.mean(distances.argmin(axis=1) == dataset.labels[held_out])
    assert accuracy > 0.25


def test_expressions_are_learnable(dataset):
    # A linear classifier on 16x16 block-averaged pixels of 1,400 faces. Ridge is solved in closed
    # form, so this stays fast even on a busy CPU. Measured held-out accuracy 0.71-0.77 over
    # seeds 0-3 (chance is 0.14); a small CNN reaches ~99% (tested elsewhere).
    from sklearn.linear_model import RidgeClassifier

    images = dataset.images[:1400].astype(np.float32)
    labels = dataset.labels[:1400]
    features = images.reshape(-1, 16, 3, 16, 3).mean(axis=(2, 4)).reshape(len(images), -1)
    features -= features.mean(axis=1, keepdims=True)
    features /= features.std(axis=1, keepdims=True) + 1e-6
    model = RidgeClassifier(alpha=100.0).fit(features[:1050], labels[:1050])
    accuracy = model.score(features[1050:], labels[1050:])
    assert accuracy > 0.5


def test_cue_masks_mark_where_the_expressions_differ():
    from ferkit.data.synth_cues import expression_cue_masks

    images, labels = generate_faces(700, seed=2)
    masks, mask_labels = expression_cue_masks(700, seed=2)
    assert (mask_labels == labels).all() and masks.shape == images.shape
    assert 0.04 < (masks > 0).mean() < 0.2  # brows, eyes, mouth: a small part of the face
    # Between-class variance of the class-mean images lives on the cue pixels.
    means = np.stack([images[labels == label].mean(axis=0) for label in range(7)])
    between = means.var(axis=0)
    cue = masks.mean(axis=0) > 0.05
    assert between[cue].mean() > 3 * between[~cue].mean()
