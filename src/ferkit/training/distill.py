"""Knowledge distillation's teachers: loading them, and offline distillation's target table."""

from __future__ import annotations

import torch

from ferkit.models import hub
from ferkit.models.runtime import batched_logits
from ferkit.utils.errors import FerkitError


def load_teachers(location: str, class_names, normalization: dict, device) -> list:
    """The eval-mode models of a teacher, loaded by :func:`ferkit.models.hub.load` ([] for "").

    Raises:
        FerkitError: when the teacher's classes or input normalisation differ from the student's.

    Example:
        >>> load_teachers("", ["Happy", "Sad"], {"mean": 0.5, "std": 0.25}, "cpu")
        []
    """
    if not location:
        return []
    teacher = hub.load(location, device=device)
    if teacher.kind == "onnx":
        raise FerkitError(
            f"teacher {location}: an ONNX file cannot teach; pass the PyTorch model it was "
            "exported from (run folder, checkpoint, ensemble folder or bundled name)"
        )
    if [name.lower() for name in teacher.class_names] != [name.lower() for name in class_names]:
        raise FerkitError(
            f"teacher {location}: classes {list(teacher.class_names)} differ from the data's "
            f"{list(class_names)}"
        )
    models = []
    for model, card in teacher.members:
        if card["normalization"] != normalization:
            raise FerkitError(f"teacher {location}: a member uses another input normalisation")
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        models.append(model.eval())
    return models


def offline_teacher_probabilities(
    teachers: list[torch.nn.Module],
    images,
    temperature: float,
    normalization: dict | None = None,
    batch_size: int = 512,
    device: torch.device | None = None,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """The teachers' softened probabilities (N, classes) for each clean face, computed once.

    For offline distillation: each teacher's ``softmax(logits / temperature)``, its logits
    averaged over the face and its mirror image (the ``flip`` test-time augmentation; training
    flips faces at random), then averaged over the teachers. One pass over the training set
    replaces a teacher forward pass per step.

    Example:
        >>> import numpy as np
        >>> from ferkit.models import create_model
        >>> teacher = create_model("classic", channels=[4, 4, 4]).eval()
        >>> table = offline_teacher_probabilities([teacher], np.zeros((3, 48, 48), np.uint8), 2.0)
        >>> table.shape, bool(torch.allclose(table.sum(dim=1), torch.ones(3)))
        (torch.Size([3, 7]), True)
    """
    tables = [
        torch.softmax(
            batched_logits(teacher, images, normalization, batch_size, device, autocast_dtype,
                           channels_last, tta="flip") / temperature,
            dim=1,
        )
        for teacher in teachers
    ]  # fmt: skip
    return torch.stack(tables).mean(dim=0)
