"""Self-describing checkpoints: safetensors weights plus a JSON model card.

A model card holds everything needed to rebuild and use the model without the training
config: architecture name and arguments, class names, input size, normalisation, metrics.
Pickles are never loaded.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ferkit import __version__
from ferkit.models import create_model
from ferkit.utils.errors import FerkitError
from ferkit.utils.io import atomic_write, read_json, write_json

CARD_FORMAT = "ferkit-model"
CARD_FORMAT_VERSION = 1


def make_model_card(
    model: torch.nn.Module,
    class_names,
    normalization: dict,
    input_size: int = 48,
    **extra,
) -> dict:
    """Describe ``model`` (built by :func:`ferkit.models.create_model`) as a JSON-able dict.

    Example:
        >>> from ferkit.models import create_model
        >>> card = make_model_card(create_model("classic"), ["a"] * 7, {"mean": 0.5, "std": 0.25})
        >>> card["architecture"], card["input_size"]
        ('classic', [48, 48])
    """
    return {
        "format": CARD_FORMAT,
        "format_version": CARD_FORMAT_VERSION,
        "architecture": model.ferkit_name,
        "arguments": model.ferkit_arguments,
        "class_names": list(class_names),
        "input_size": [input_size, input_size],
        "input_channels": model.ferkit_arguments.get("in_channels", 1),
        "color": "grayscale",
        "normalization": dict(normalization),
        "ferkit_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    # safetensors needs contiguous tensors; channels_last weights are not.
    return {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}


def save_checkpoint(model: torch.nn.Module, stem: str | os.PathLike, card: dict) -> Path:
    """Write ``STEM.safetensors`` and ``STEM.json`` (the card), each atomically.

    Example:
        >>> import tempfile, pathlib
        >>> from ferkit.models import create_model
        >>> model = create_model("classic", channels=[8, 8, 8])
        >>> card = make_model_card(model, ["x"] * 7, {"mean": 0.5, "std": 0.25})
        >>> stem = save_checkpoint(model, pathlib.Path(tempfile.mkdtemp()) / "best", card)
        >>> sorted(path.suffix for path in stem.parent.iterdir())
        ['.json', '.safetensors']
    """
    stem = Path(stem)
    weights = _weights(model)
    atomic_write(stem.with_suffix(".safetensors"), lambda tmp: save_file(weights, tmp))
    write_json(stem.with_suffix(".json"), card)
    return stem


def resolve_checkpoint(location: str | os.PathLike) -> Path:
    """Find the checkpoint stem for a run folder, a ``.json``/``.safetensors`` file or a stem.

    In a run folder: ``best``, else the ``last/`` bundle's ``model``. A bundled model's name
    (``default``, ``small``) that is not also a local path addresses the model shipped inside
    the package.

    Raises:
        FerkitError: when nothing usable is there.

    Example:
        >>> resolve_checkpoint("/nonexistent")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ferkit.utils.errors.FerkitError: /nonexistent: not a model ...
    """
    from ferkit.pretrained import BUNDLED_MODELS, bundled_model

    if str(location) in BUNDLED_MODELS and not Path(location).exists():
        return bundled_model(str(location))
    location = Path(location)
    if location.is_dir():
        for stem in (location / "best", location / "model", location / "last" / "model"):
            if stem.with_suffix(".safetensors").is_file():
                return stem
        raise FerkitError(f"{location}: no best.safetensors (or last/model.safetensors) here")
    if location.suffix in (".json", ".safetensors") or not location.suffix:
        # A checkpoint is named by either file or by their common stem (``run/best``).
        stem = location.with_suffix("") if location.suffix else location
        if stem.with_suffix(".safetensors").is_file() and stem.with_suffix(".json").is_file():
            return stem
    raise FerkitError(
        f"{location}: not a model (expected a run folder, or a .safetensors file "
        "with its .json card beside it)"
    )


def load_checkpoint(location: str | os.PathLike, device="cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild a model from its card and load its weights; returns (model in eval mode, card).

    Example:
        >>> import tempfile, pathlib
        >>> from ferkit.models import create_model
        >>> model = create_model("classic", channels=[8, 8, 8])
        >>> card = make_model_card(model, ["x"] * 7, {"mean": 0.5, "std": 0.25})
        >>> stem = save_checkpoint(model, pathlib.Path(tempfile.mkdtemp()) / "best", card)
        >>> loaded, card = load_checkpoint(stem.parent)
        >>> card["arguments"]["channels"]
        [8, 8, 8]
    """
    stem = resolve_checkpoint(location)
    card_path, weights_path = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    try:
        card = read_json(card_path)
    except (ValueError, OSError) as error:
        raise FerkitError(f"{card_path}: not a readable model card ({error})") from error
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise FerkitError(f"{card_path}: not a ferkit model card")
    missing = [key for key in ("architecture", "arguments", "class_names") if key not in card]
    if missing:
        raise FerkitError(f"{card_path}: model card lacks {', '.join(missing)}")
    model = create_model(card["architecture"], **card["arguments"])
    try:
        weights = load_file(weights_path, device=str(device))
    except Exception as error:  # safetensors raises its own error type for damaged files
        raise FerkitError(f"{weights_path}: not a readable safetensors file ({error})") from error
    try:
        model.load_state_dict(weights)
    except (RuntimeError, OSError) as error:
        raise FerkitError(
            f"{stem.with_suffix('.safetensors')}: weights do not fit the card: {error}"
        ) from error
    return model.to(device).eval(), card


def transfer_weights(
    source: torch.nn.Module, card: dict, class_names
) -> tuple[torch.nn.Module, int, int]:
    """Fine-tuning surgery: a new model of ``card``'s architecture holding ``source``'s weights.

    Every tensor whose name and shape match is copied. When ``class_names`` differ from the
    card's (compared case-insensitively), the classifier's last layer is left freshly
    initialised for the new classes.

    Returns:
        (the new model, tensors copied, tensors in the model).

    Example:
        >>> from ferkit.models import create_model
        >>> source = create_model("classic", channels=[4, 4, 4])
        >>> card = make_model_card(source, list("abcdefg"), {"mean": 0.5, "std": 0.25})
        >>> model, copied, total = transfer_weights(source, card, ["yes", "no"])
        >>> model.ferkit_arguments["num_classes"], total - copied
        (2, 2)
    """
    arguments = {key: value for key, value in card["arguments"].items() if key != "num_classes"}
    model = create_model(card["architecture"], num_classes=len(class_names), **arguments)
    head = [module for module in model.modules() if isinstance(module, torch.nn.Linear)][-1]
    head_names = {name for name, parameter in model.named_parameters() if any(
        parameter is other for other in head.parameters())}  # fmt: skip
    same_classes = [name.lower() for name in card["class_names"]] == [
        name.lower() for name in class_names
    ]
    own = model.state_dict()
    copied = {
        name: tensor
        for name, tensor in source.state_dict().items()
        if name in own
        and own[name].shape == tensor.shape
        and (same_classes or name not in head_names)
    }
    model.load_state_dict(copied, strict=False)
    return model, len(copied), len(own)


def save_optimizer(optimizer: torch.optim.Optimizer, stem: str | os.PathLike) -> None:
    """Save an optimizer's state as safetensors (tensors) + JSON (hyper-parameters).

    Example:
        >>> import tempfile, pathlib
        >>> model = torch.nn.Linear(2, 1)
        >>> optimizer = torch.optim.Adam(model.parameters())
        >>> model(torch.ones(1, 2)).sum().backward(); optimizer.step()
        >>> stem = pathlib.Path(tempfile.mkdtemp()) / "optimizer"
        >>> save_optimizer(optimizer, stem)
        >>> fresh = torch.optim.Adam(model.parameters())
        >>> load_optimizer(fresh, stem)
        >>> int(fresh.state_dict()["state"][0]["step"])
        1
    """
    stem = Path(stem)
    state_dict = optimizer.state_dict()
    tensors, scalars = {}, {}
    for parameter_index, state in state_dict["state"].items():
        for key, value in state.items():
            name = f"{parameter_index}.{key}"
            if torch.is_tensor(value):
                tensors[name] = value.detach().cpu().contiguous()
            else:
                scalars[name] = value
    atomic_write(stem.with_suffix(".safetensors"), lambda tmp: save_file(tensors, tmp))
    write_json(
        stem.with_suffix(".json"), {"param_groups": state_dict["param_groups"], "scalars": scalars}
    )


def load_optimizer(optimizer: torch.optim.Optimizer, stem: str | os.PathLike) -> None:
    """Restore what :func:`save_optimizer` wrote into ``optimizer`` (example there)."""
    stem = Path(stem)
    tensors = load_file(stem.with_suffix(".safetensors"))
    meta = read_json(stem.with_suffix(".json"))
    state: dict[int, dict] = {}
    for name, value in list(tensors.items()) + list(meta["scalars"].items()):
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    # JSON turned tuples (Adam's betas) into lists; give them back their type.
    groups = [
        {key: tuple(value) if isinstance(value, list) and key != "params" else value
         for key, value in group.items()}
        for group in meta["param_groups"]
    ]  # fmt: skip
    optimizer.load_state_dict({"state": state, "param_groups": groups})
