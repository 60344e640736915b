# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Facial expression recognition on FER2013 with ferkit
#
# This notebook follows the sections of the classic FER2013 training notebook (a Keras CNN on
# 48x48 grayscale faces), with each step done by one `ferkit` call:
#
# 1. setup, 2. load the data, 3. label distribution and sample faces, 4. train/validation split,
# 5. the CNN, 6. two training phases with a learning-rate drop, 7. training history,
# 8. the saved model, 9. predicting one face, 10. evaluation, 11. k-fold cross-validation.
#
# ferkit's plot functions (`ferkit.plots`) return Matplotlib figures, which the notebook shows
# inline; the commands write the same figures to PNG files. It draws one figure of its own.
#
# By default everything runs on **synthetic faces** drawn by `ferkit.data.write_synthetic_csv`, so
# the notebook needs no download and finishes in about a minute on a laptop CPU. Set `DATA` to a
# FER2013 CSV to train on real faces.

# %% [markdown]
# ## 1. Setup
#
# * `DATA`: `None` generates synthetic faces into the work folder; a path to a FER2013 CSV
#   (`emotion,pixels[,Usage]`, plain or `.gz`) switches every section to real data.
# * `QUICK`: tiny trainings (a few epochs of a narrower CNN) that take seconds. It defaults to on
#   for synthetic faces and off for real data; the environment variable `FERKIT_NOTEBOOK_QUICK=1`
#   (or `0`) overrides it, which is how the tests run this notebook.
# * `WORK`: where every file goes (`$FERKIT_NOTEBOOK_WORK`, else `runs/notebook` beside this
#   notebook; `runs/` is ignored by git).

# %%
import os
from pathlib import Path

# None: synthetic faces. For real data, a FER2013 CSV, e.g.
# DATA = "../../shared/data/fer2013-train-publictest.csv.gz"
DATA = None

QUICK = DATA is None
if os.environ.get("FERKIT_NOTEBOOK_QUICK") in ("0", "1"):
    QUICK = os.environ["FERKIT_NOTEBOOK_QUICK"] == "1"

WORK = Path(os.environ.get("FERKIT_NOTEBOOK_WORK") or "runs/notebook")
WORK.mkdir(parents=True, exist_ok=True)
SEED = 0

if QUICK:
    SYNTHETIC_FACES = 1400  # 200 per class
    EPOCHS, BATCH_SIZE = [3, 1], 32
    # The notebook's CNN, narrower and with lighter dropout, so that it learns in a few epochs.
    MODEL_ARGS = {
        "channels": [16, 32, 32],
        "block_dropouts": [0.1, 0.1, 0.1],
        "dense_dropouts": [0.2, 0.1],
    }
    CV_FOLDS, CV_EPOCHS = 3, [1, 1]
else:
    SYNTHETIC_FACES = 3500
    EPOCHS, BATCH_SIZE = [20, 20], 256
    MODEL_ARGS = {}  # the notebook's CNN exactly
    CV_FOLDS, CV_EPOCHS = 5, EPOCHS

print(f"DATA={DATA!r}  QUICK={QUICK}  WORK={WORK}")

# %%
import dataclasses
import json

import matplotlib.pyplot as plt
import numpy as np
import PIL.Image

import ferkit
from ferkit.data import load_fer2013, split_dataset, write_synthetic_csv
from ferkit.data.explore import class_table, explore
from ferkit.evaluation import classification_metrics, format_metrics
from ferkit.inference import Predictor
from ferkit.models import count_parameters, create_model, list_models
from ferkit.models.checkpoint import load_checkpoint
from ferkit.plots import (
    plot_confusion_matrix,
    plot_cross_validation,
    plot_face_grid,
    plot_label_distribution,
)
from ferkit.training import TrainConfig, fit, learning_rate_at
from ferkit.training.crossval import cross_validate
from ferkit.training.report import plot_run_history
from ferkit.utils.io import read_json

# %matplotlib inline

print(f"ferkit {ferkit.__version__}")

# %% [markdown]
# ## 2. Load the data
#
# `load_fer2013` reads a FER2013 CSV (or an image folder) into a `FerDataset`: `images` is a
# uint8 array (N, 48, 48), `labels` holds class indices, `class_names` their names and `usage`
# the CSV's `Usage` column when it has one. Parsed CSVs are cached (`$FERKIT_CACHE_DIR`, else
# `~/.cache/ferkit`), so loading FER2013 a second time takes a fraction of a second.

# %%
if DATA is None:
    DATA_PATH = write_synthetic_csv(WORK / "synthetic_faces.csv", n=SYNTHETIC_FACES, seed=SEED)
else:
    DATA_PATH = Path(DATA)

dataset = load_fer2013(DATA_PATH)
print(f"source: {dataset.source}")
print(f"{len(dataset)} faces; images {dataset.images.shape} {dataset.images.dtype}")
print(f"labels {dataset.labels.shape} {dataset.labels.dtype}")
print("classes:", dict(enumerate(dataset.class_names)))
if dataset.usage is not None:
    usages, counts = np.unique(dataset.usage, return_counts=True)
    print("Usage column:", dict(zip(usages.tolist(), counts.tolist())))

# %% [markdown]
# ## 3. Label distribution and sample faces
#
# `explore` (the twin of `ferkit explore`) returns the class table (`class_table`: counts and
# shares, overall and per `Usage` split) and writes two figures: the label distribution and a 4x4
# grid of random faces titled with their emotion. The plot functions it uses return the figures,
# shown here inline. Real FER2013 is imbalanced (*Disgust* is about
# 1.5 % of the faces); the synthetic faces are balanced.

# %%
exploration = explore(DATA_PATH, WORK / "explore", seed=SEED)
print(class_table(dataset))  # also in exploration["table"]
plot_label_distribution(dataset.class_counts())

# %%
chosen = np.random.default_rng(SEED).choice(len(dataset), size=16, replace=False)
plot_face_grid(dataset.images[chosen], [dataset.class_names[i] for i in dataset.labels[chosen]])

# %% [markdown]
# ## 4. Train/validation split
#
# An 80/20 split, stratified by class so that both parts keep the class proportions, and seeded
# so that it is the same every run. (`split_dataset(dataset, "usage")` would instead use FER2013's
# `Usage` column: `Training` for training, `PublicTest` for validation.)

# %%
train_set, val_set = split_dataset(dataset, "stratified", val_fraction=0.2, seed=SEED)
print(f"train {len(train_set)} faces, validation {len(val_set)} faces")

train_counts, val_counts = train_set.class_counts(), val_set.class_counts()
print(f"\n{'class':<10}{'train':>8}{'validation':>12}")
for name in dataset.class_names:
    print(f"{name:<10}{train_counts[name]:>8}{val_counts[name]:>12}")

# %% [markdown]
# ## 5. The CNN
#
# The registered architecture `"classic"` is the notebook's Keras model layer for layer: three
# blocks of two 3x3 "same" convolutions with ReLU, 2x2 max-pooling, dropout and batch
# normalisation, then dense 128 and dense 64 layers with dropout, batch normalisation and a 7-way
# output. Keras counts batch normalisation's running mean and variance as (non-trainable)
# parameters, which gives the notebook's **674,759**; `count_parameters` counts the same way
# unless asked not to.
#
# In QUICK mode the training below uses a narrower variant of the same CNN (`MODEL_ARGS`).

# %%
print("registered architectures:", list_models())
model = create_model("classic")
print(model)
print(f"parameters, counted like Keras: {count_parameters(model):,}")
trainable = count_parameters(model, include_batchnorm_statistics=False)
print(f"trainable parameters: {trainable:,}")
assert count_parameters(model) == 674_759

if QUICK:
    quick_model = create_model("classic", **MODEL_ARGS)
    print(f"\nQUICK mode trains a narrower variant, {MODEL_ARGS}:")
    print(f"{count_parameters(quick_model):,} parameters")

# %% [markdown]
# ## 6. Training: phase 1, then a learning-rate drop for phase 2
#
# The classic notebook trains with Adam at a learning rate of 1e-3, then trains on at a ten times
# lower rate. In ferkit that schedule is one `TrainConfig`: `epochs=[N1, N2]` lists the epochs of
# each phase and `lr_drop=0.1` multiplies the learning rate at each phase boundary (the optimizer
# and its state carry on). `learning_rate_at(epoch, phases, lr, drop)` is the schedule as a
# function of the 0-based epoch.
#
# `fit(config, train_set, val_set)` trains with batched augmentation (random flips, shifts, zooms
# and rotations), evaluates on the validation set after every epoch, keeps the best epoch's
# weights, and fills the run folder `config.out`. `TrainConfig.data` is only recorded in the
# model card here (`fit` gets the datasets directly); `train(config)` would load and split it
# itself.

# %%
config = TrainConfig(
    data=str(DATA_PATH),
    out=str(WORK / "run"),
    arch="classic",
    model_args=MODEL_ARGS,
    epochs=EPOCHS,
    lr=1e-3,
    lr_drop=0.1,
    batch_size=BATCH_SIZE,
    seed=SEED,
    progress=False,  # one line per epoch instead of progress bars
    overwrite=True,  # running the notebook again replaces the previous run
)
boundary = config.epochs[0]
for epoch in sorted({0, boundary - 1, boundary, config.total_epochs - 1}):
    rate = learning_rate_at(epoch, config.epochs, config.lr, config.lr_drop)
    print(f"epoch {epoch + 1:>2}/{config.total_epochs}: learning rate {rate:.0e}")

# %%
result = fit(config, train_set, val_set)
run_dir = result.run_dir
print(f"\nbest epoch {result.best_epoch}: validation accuracy {result.metrics['accuracy']:.2%}")

# %% [markdown]
# ## 7. Training history
#
# Loss and accuracy per epoch, for training (on augmented faces, with dropout) and validation; the
# dashed line marks the learning-rate drop. The same numbers are in `history.csv` and
# `history.json`, and in `result.history`.

# %%
print("\n".join((run_dir / "history.csv").read_text().splitlines()[:6]))
plot_run_history(result.history, config)

# %% [markdown]
# ## 8. The saved model and history
#
# Where the classic notebook saves the Keras model and pickles the history, `fit` has already
# written the run folder: `config.json`, the best weights (`best.safetensors`, never pickles)
# with a JSON **model card**, the `last/` checkpoint for resuming, the history, the validation
# metrics and the plots. The model card says everything needed to rebuild and use the model:
# architecture and arguments, class names, input size, normalisation and its metrics.

# %%
for path in sorted(run_dir.rglob("*")):
    if path.is_file():
        print(f"{str(path.relative_to(run_dir)):<28}{path.stat().st_size:>12,} bytes")
print()
print(json.dumps(read_json(run_dir / "best.json"), indent=2))

# %%
reloaded_model, card = load_checkpoint(run_dir)
print(f"reloaded {card['architecture']} from epoch {card['epoch']}:", end=" ")
print(f"{count_parameters(reloaded_model):,} parameters")

# %% [markdown]
# ## 9. Predicting one face
#
# `Predictor.from_run` loads a run folder's best model with its preprocessing; `predict` takes an
# image path, a PIL image or an array of any size, colour or gray (the crop is made square,
# converted to gray and resized to 48x48), and returns the label, its probability and every
# class's probability. Here a validation face is saved as a 96x96 PNG and classified from the file.

# %%
face_index = int(np.flatnonzero(val_set.labels == val_set.class_names.index("Happy"))[0])
true_label = val_set.class_names[val_set.labels[face_index]]
face_path = WORK / "face.png"
PIL.Image.fromarray(val_set.images[face_index]).resize((96, 96)).save(face_path)

predictor = Predictor.from_run(run_dir)
prediction = predictor.predict(face_path)
print(f"true: {true_label}   predicted: {prediction.label} ({prediction.score:.1%})")

figure, (face_axis, bar_axis) = plt.subplots(
    1, 2, figsize=(9, 3.2), gridspec_kw={"width_ratios": [1, 2]}
)
face_axis.imshow(PIL.Image.open(face_path), cmap="gray", vmin=0, vmax=255)
face_axis.set_title(f"{face_path.name} (true: {true_label})")
face_axis.axis("off")
names = list(prediction.probabilities)
colors = ["tab:orange" if name == prediction.label else "tab:blue" for name in names]
bar_axis.barh(names, list(prediction.probabilities.values()), color=colors)
bar_axis.invert_yaxis()
bar_axis.set_xlim(0, 1)
bar_axis.set_xlabel("probability")
bar_axis.set_title(f"predicted: {prediction.label} ({prediction.score:.0%})")
figure.tight_layout()

# %% [markdown]
# ## 10. Evaluation
#
# `fit` evaluated the best model on the validation set: accuracy, macro-F1 (the mean F1 over the
# classes, which counts the rare *Disgust* as much as *Happy*), precision, recall and F1 per class
# and the confusion matrix, as counts and normalised per true class. The same metrics come from
# the reloaded `Predictor` on any labelled faces (`ferkit evaluate` does this for a CSV).

# %%
print(format_metrics(result.metrics))
plot_confusion_matrix(np.array(result.metrics["confusion_matrix"]), val_set.class_names)

# %%
probabilities = predictor.predict_proba(val_set.images)
metrics = classification_metrics(val_set.labels, probabilities.argmax(axis=1), val_set.class_names)
print(f"Predictor on the {metrics['count']} validation faces: accuracy {metrics['accuracy']:.2%}")

# %% [markdown]
# ## 11. k-fold cross-validation
#
# One split gives one estimate; stratified k-fold cross-validation trains one model per fold of
# the whole dataset (each face is used for validation exactly once) and reports the mean and
# spread of the validation scores. `cross_validate` repeats the training configuration in
# `OUT/fold_k` run folders and writes `cv_summary.json` and `cv_folds.png`. In QUICK mode it is
# 3 folds of only 1 + 1 epochs, so expect lower scores than in section 6; otherwise it is 5 folds
# with the full schedule, which costs five trainings.

# %%
cv_config = dataclasses.replace(config, out=str(WORK / "cv"), epochs=CV_EPOCHS)
summary = cross_validate(cv_config, folds=CV_FOLDS)
print(f"\naccuracy {summary['accuracy_mean']:.2%} ± {summary['accuracy_std']:.2%}")
print(f"macro-F1 {summary['macro_f1_mean']:.3f} ± {summary['macro_f1_std']:.3f}")
for fold in summary["per_fold"]:
    print(f"fold {fold['fold']}: accuracy {fold['accuracy']:.2%}, macro-F1 {fold['macro_f1']:.3f}")
plot_cross_validation(summary["per_fold"])

# %% [markdown]
# ## Next steps
#
# The same steps from a shell:
#
# ```
# ferkit explore DATA --out runs/explore
# ferkit train DATA --out runs/classic --epochs 20 20 --split usage
# ferkit train DATA --out runs/vgg --config recipes/fer2013-default.json   # the default's recipe
# ferkit evaluate DATA --model runs/classic --split PrivateTest   # the held-out test split
# ferkit predict face.png --model runs/classic
# ferkit cv DATA --out runs/cv --folds 5
# ```
#
# (`--split usage` selects the best epoch on `PublicTest`, so report test accuracy on
# `PrivateTest`, the split that took no part in training or selection.)
# `ferkit train --help` lists every `TrainConfig` option (optimizer, weight decay, label
# smoothing, augmentation strengths, device, precision, `--resume`).
