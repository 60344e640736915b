"""Model cards a user can read: what a model is for, what it is not for, how good it is.

A ferkit model card is the JSON beside the weights (``best.json``, a bundled model's
``NAME.json``, an ensemble's ``ensemble.json``, the ``model_card`` metadata of an ONNX
export). Besides what rebuilds the model it can carry ``intended_use``,
``out_of_scope_uses``, ``training_data`` (name, description, known limitations), the
evaluation (per-class recall, how measured), ``calibration`` and ``abstention``.
:func:`format_model_card` renders it as Markdown; ``ferkit info MODEL`` prints that, the web
service's ``/v1/model`` serves it, and docs/models.md holds the bundled models' cards.

Example:
    >>> text = format_model_card({"architecture": "seed", "class_names": ["a", "b"]}, "demo")
    >>> text.splitlines()[0]
    '# Model card: demo'
"""

from __future__ import annotations

import os

from ferkit.utils.errors import FerkitError

#: What every ferkit emotion model is for (a card may say more).
INTENDED_USE = [
    "Research, teaching and prototyping of facial expression recognition.",
    "Aggregate, consented analysis of the *visible* facial expression in photos or video "
    "(e.g. how often a smile appears in a usability-test recording), with a human checking "
    "the results.",
    "A baseline to compare new FER models against, on FER2013-style 48x48 face crops.",
]
#: Uses no ferkit model is fit for.
OUT_OF_SCOPE_USES = [
    "Judging a person's inner state, feelings, intentions, honesty or mental health: a facial "
    "expression is not an emotion, and the labels are annotators' readings of posed or "
    "spontaneous web photos.",
    "Decisions about people: hiring, admission, credit, insurance, policing, border control, "
    "grading, or any assessment of an individual.",
    "Surveillance or monitoring of people who have not consented, including workplaces and "
    "classrooms.",
    "Use on groups the training data does not represent, without measuring accuracy there "
    "first (no demographic annotations exist to check fairness).",
]
#: What is known about FER2013, the data of the bundled models.
FER2013_DATA = {
    "name": "FER2013 (Goodfellow et al., 2013; ICML 2013 representation-learning challenge)",
    "description": "35,887 grayscale 48x48 face crops found by Google image search for "
    "emotion keywords, labelled with 7 expressions (Angry, Disgust, Fear, Happy, Sad, Surprise, "
    "Neutral); Training 28,709, PublicTest 3,589, PrivateTest 3,589.",
    "known_limitations": [
        "Web images: studio portraits, stock photos, film stills and snapshots, biased towards "
        "people and expressions that get photographed and posted online.",
        "Posed and spontaneous expressions are mixed, and nothing says which is which.",
        "No demographic annotations (age, gender, skin tone, ethnicity), so accuracy per group "
        "cannot be measured on this data; fairness is unknown.",
        "Label noise: human accuracy on FER2013 is about 65 +- 5 % (Goodfellow et al.); some "
        "faces are mislabelled, some crops show no face, text or watermarks.",
        "Imbalanced classes: Disgust has 547 training faces, Happy 7,215.",
        "Low resolution (48x48 grayscale): colour and fine detail are gone.",
    ],
}


#: What is known about FER+, the data of the FER+ models (``ferplus``, the default).
FERPLUS_DATA = {
    "name": "FER+ (Barsoum et al., ICMI 2016): FER2013's faces relabelled by 10 annotators each",
    "description": "FER2013's 48x48 grayscale web faces, each labelled by ten crowd workers "
    "with 8 expressions (Neutral, Happy, Surprise, Sad, Angry, Disgust, Fear, Contempt) plus "
    "unknown / not a face; trained on the vote distributions of FER2013Train (28,385 faces "
    "after leaving out those whose majority is unknown or not a face), selected on "
    "FER2013Valid (3,555).",
    "known_limitations": [
        "The same web images as FER2013 (see its limits): posed and spontaneous mixed, no "
        "demographic annotations, so fairness across groups is unknown.",
        "The votes are ten crowd workers' readings of a photo, not what the person felt; the "
        "probabilities estimate how such annotators would read the face.",
        "Rare classes: Contempt has 168 training faces by majority and Disgust 191; recall on "
        "them is low (Contempt near 0).",
        "Low resolution (48x48 grayscale): colour and fine detail are gone.",
    ],
}


def responsible_use_fields(training_data: dict | None = None) -> dict:
    """The card fields on use and data, with ferkit's statements (FER2013 data by default).

    Example:
        >>> sorted(responsible_use_fields())
        ['intended_use', 'out_of_scope_uses', 'training_data']
    """
    return {
        "intended_use": list(INTENDED_USE),
        "out_of_scope_uses": list(OUT_OF_SCOPE_USES),
        "training_data": dict(training_data or FER2013_DATA),
    }


def load_model_card(model: str | os.PathLike = "default") -> dict:
    """The card of a run folder, checkpoint, ensemble folder, ``.onnx`` file or bundled name.

    ``ferkit info``'s Python twin (with :func:`format_model_card`).

    Raises:
        FerkitError: when ``model`` is not a model or its card is unreadable.

    Example:
        >>> load_model_card("default")["architecture"]
        'vgg'
    """
    from ferkit.models import hub
    from ferkit.utils.io import read_json

    kind, path = hub.locate(model)
    if kind == "onnx":
        from ferkit.inference.engines import OnnxEngine

        return OnnxEngine(path).card
    path = path if kind == "ensemble" else path.with_suffix(".json")
    try:
        card = read_json(path)
    except (ValueError, OSError) as error:
        raise FerkitError(f"{path}: not a readable model card ({error})") from error
    if not isinstance(card, dict):
        raise FerkitError(f"{path}: not a ferkit model card")
    return card


def _bullets(items) -> list[str]:
    return [f"- {item}" for item in items]


def _performance(card: dict) -> list[str]:
    evaluation = card.get("evaluation") or {}
    metrics = card.get("metrics") or {}
    recall = evaluation.get("per_class_recall") or metrics.get("per_class_recall")
    accuracy = evaluation.get("accuracy", metrics.get("validation_accuracy"))
    macro_f1 = evaluation.get("macro_f1", metrics.get("validation_macro_f1"))
    lines = ["## Performance", ""]
    if accuracy is None:
        return lines + ["Not measured in this card.", ""]
    measured_on = evaluation.get("data") or "the validation split of its training run"
    lines.append(
        f"Measured on {measured_on}" + (f", TTA `{card['tta']}`." if "tta" in card else ".")
    )
    lines.append("")
    lines.append(f"- accuracy: {accuracy:.2%}" + (f", macro-F1 {macro_f1:.3f}" if macro_f1 else ""))
    if recall:
        lines += ["", "| class | recall |", "|---|---|"]
        lines += [f"| {name} | {value:.1%} |" for name, value in recall.items()]
    return lines + [""]


def describe_map(summary: dict) -> str:
    """``temperature 1.049`` or ``dirichlet scaling`` for a calibration summary or card entry.

    Example:
        >>> describe_map({"temperature": 1.0491}), describe_map({"map": "vector"})
        ('temperature 1.049', 'vector scaling')
    """
    if "map" in summary:
        return f"{summary['map']} scaling"
    return f"temperature {summary.get('temperature', 1.0):.3f}"


def _calibration(card: dict) -> list[str]:
    calibration = card.get("calibration")
    lines = ["## Calibration", ""]
    if not calibration:
        return lines + [
            "Not calibrated: probabilities are the raw softmax (run `ferkit calibrate`).",
            "",
        ]
    if "map" in calibration:  # vector or Dirichlet scaling: the card's method says what it is
        method = calibration["method"][0].upper() + calibration["method"][1:]
    else:
        method = f"Temperature scaling, T = {calibration['temperature']:.3f}"
    lines.append(
        f"{method}, fitted on {calibration['fitted_on']}; probabilities everywhere (predict, "
        "serve, ONNX) use it."
    )
    lines += ["", "| | before | after |", "|---|---|---|"]
    for key, name in (("ece", f"ECE ({calibration.get('ece_bins', 15)} bins)"), ("nll", "NLL"),
                      ("brier", "Brier"), ("accuracy", "accuracy")):  # fmt: skip
        if key + "_before" in calibration:  # cards calibrated before accuracy was recorded
            before, after = calibration[key + "_before"], calibration[key + "_after"]
            lines.append(f"| {name} | {before:.4f} | {after:.4f} |")
    if calibration.get("note"):
        lines += ["", calibration["note"]]
    abstention = card.get("abstention")
    if abstention:
        header = "| min confidence | faces answered | accuracy on them |"
        lines += ["", f"`--min-confidence` on {abstention['measured_on']}:", "", header,
                  "|---|---|---|"]  # fmt: skip
        for row in abstention["thresholds"]:
            accuracy = "-" if row["accuracy"] is None else f"{row['accuracy']:.1%}"
            lines.append(f"| {row['min_confidence']:g} | {row['coverage']:.1%} | {accuracy} |")
    return lines + [""]


def format_model_card(card: dict, name: str = "model") -> str:
    """A model card as Markdown: model, intended use, unfit uses, data, performance, calibration.

    Fields a card lacks are said to be missing; intended and unfit uses fall back to ferkit's
    statements for every model (marked as such).

    Example:
        >>> "## Not fit for" in format_model_card({"architecture": "seed"})
        True
    """
    names = card.get("class_names", [])
    lines = [f"# Model card: {name}", ""]
    summary = f"Architecture `{card.get('architecture', card.get('format', '?'))}`"
    if card.get("parameters"):
        summary += f", {card['parameters']:,} parameters"
    if card.get("input_size"):
        size = card["input_size"]
        summary += f", input {size[0]}x{size[1]} {card.get('color', 'grayscale')}"
    if card.get("members"):
        architectures = ", ".join(str(member.get("architecture")) for member in card["members"])
        summary += f", an ensemble of {len(card['members'])} models ({architectures})"
    lines += [summary + ".", "", f"Classes: {', '.join(names)}.", ""]
    default = " (ferkit's statement for every model)"
    sections = (
        ("intended_use", "Intended use", INTENDED_USE),
        ("out_of_scope_uses", "Not fit for", OUT_OF_SCOPE_USES),
    )
    for key, title, fallback in sections:
        lines += [f"## {title}" + ("" if card.get(key) else default), ""]
        lines += _bullets(card.get(key) or fallback) + [""]
    data = card.get("training_data") or {}
    training = card.get("training") or {}
    lines += ["## Training data", ""]
    if data:
        lines += [f"{data.get('name', '')}: {data.get('description', '')}".strip(": "), ""]
        lines += ["Known limitations:", ""] + _bullets(data.get("known_limitations", [])) + [""]
    elif training:
        lines += [f"{training.get('data')} ({training.get('train_size')} training, "
                  f"{training.get('val_size')} validation faces); known limitations not "
                  "stated in this card.", ""]  # fmt: skip
    else:
        lines += ["Not stated in this card.", ""]
    lines += _performance(card) + _calibration(card)
    recipe = card.get("recipe") or {}
    if recipe.get("command"):
        lines += ["## How it was made and measured", "", f"`{recipe['command']}`", ""]
        if recipe.get("notes"):
            lines += [recipe["notes"], ""]
    # ferkit writes "70.41 %" (a space before the percent sign), as in its other reports.
    return "\n".join(lines).rstrip().replace("%", " %").replace("  %", " %") + "\n"


def model_card_markdown(model: str | os.PathLike = "default", as_json: bool = False) -> str:
    """``ferkit info MODEL``: the model's card as Markdown (or as indented JSON).

    Example:
        >>> model_card_markdown("small").splitlines()[0]
        '# Model card: ferplus-small'
    """
    import json

    card = load_model_card(model)
    if as_json:
        return json.dumps(card, indent=2)
    return format_model_card(card, card.get("bundled_name") or str(model))
