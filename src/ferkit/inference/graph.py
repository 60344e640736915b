"""The one probability graph: raw faces → normalise → TTA views → members → probabilities.

:class:`ProbabilityGraph` is the whole computation from a batch of face pixels to calibrated
class probabilities, as one ``torch.nn.Module``. The PyTorch engines run it
(:mod:`ferkit.inference.engines`) and the exporter exports it (:mod:`ferkit.inference.export`), so a
PyTorch prediction and an ONNX Runtime one go through the same graph by construction.

Example:
    >>> from ferkit.models import create_model
    >>> from ferkit.models.checkpoint import make_model_card
    >>> model = create_model("classic", channels=[4, 4, 4]).eval()
    >>> names = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"]
    >>> graph = ProbabilityGraph([(model, make_model_card(model, names, {"mean": .5, "std": .25}))])
    >>> graph(torch.zeros(2, 1, 48, 48)).shape
    torch.Size([2, 7])
"""

from __future__ import annotations

import torch

from ferkit.data.preprocessing import normalize_pixels
from ferkit.inference.calibration import calibration_of, combine_probabilities
from ferkit.models.ensemble import ENSEMBLE_FORMAT
from ferkit.models.runtime import view_logits
from ferkit.utils.errors import FerkitError


class ProbabilityGraph(torch.nn.Module):
    """Raw faces (N, 1, H, W, float 0-255) → class probabilities, for one or more members.

    Each member normalises the faces with its card's mean and std, averages its logits over
    the test-time augmentation views (the ``tta`` override, else its card's), and the
    members' logits become probabilities in
    :func:`ferkit.inference.calibration.combine_probabilities` with the cards' temperatures.

    Args:
        members: (model, model card) pairs; their probabilities are averaged (an ensemble).
        card: the ensemble's card (its temperature scales the average), or None: the first
            member's card.
        tta: a test-time augmentation for every member instead of the cards'.
        autocast_dtype: run the members under this autocast (e.g. ``torch.bfloat16``; None:
            fp32, the reproducible default and the only one exported).

    Raises:
        FerkitError: when the members disagree on class names or input size.
    """

    def __init__(
        self,
        members: list[tuple[torch.nn.Module, dict]],
        card: dict | None = None,
        tta: str | None = None,
        autocast_dtype: torch.dtype | None = None,
    ):
        super().__init__()
        card = card if card is not None else members[0][1]
        for _, member_card in members:
            if list(member_card["class_names"]) != list(card["class_names"]):
                raise FerkitError("ensemble members must share the same class names")
            if member_card["input_size"] != card["input_size"]:
                raise FerkitError("ensemble members must share the same input size")
        self.models = torch.nn.ModuleList(model for model, _ in members)
        self.cards = [member_card for _, member_card in members]
        self.card = card
        self.tta = tta
        self.class_names = tuple(card["class_names"])
        self.input_size = int(card["input_size"][0])
        self.normalization = card.get("normalization")
        #: (mean, std, tta) of each member.
        self.settings = [
            (
                member_card["normalization"]["mean"],
                member_card["normalization"]["std"],
                tta if tta is not None else member_card.get("tta", "none"),
            )
            for member_card in self.cards
        ]
        self.autocast_dtype = autocast_dtype
        self.member_temperatures, self.temperature = self.temperatures()

    @property
    def is_ensemble(self) -> bool:
        """True for an ensemble's graph (its card is an ``ensemble.json``)."""
        return self.card.get("format") == ENSEMBLE_FORMAT

    def temperatures(self, calibrated: bool = True) -> tuple[list, object]:
        """(each member's calibration, the ensemble's) for :func:`combine_probabilities`.

        A calibration is a temperature or an affine map (vector/Dirichlet scaling, see
        :func:`ferkit.inference.calibration.calibration_of`). ``calibrated=False`` leaves out the
        one ``ferkit calibrate`` fits: a model's own, or an ensemble's outer one (its members keep
        theirs).
        """
        members = [calibration_of(card) for card in self.cards]
        if not self.is_ensemble:
            return (members if calibrated else [1.0] * len(members)), 1.0
        return members, calibration_of(self.card) if calibrated else 1.0

    def member_logits(self, faces: torch.Tensor) -> list[torch.Tensor]:
        """Each member's logits (N, classes), averaged over its TTA views (uncalibrated)."""
        member_logits = []
        for model, (mean, std, tta) in zip(self.models, self.settings):
            inputs = normalize_pixels(faces, {"mean": mean, "std": std})
            member_logits.append(view_logits(model, inputs, tta, self.autocast_dtype))
        return member_logits

    def probabilities(
        self, member_logits: list[torch.Tensor], calibrated: bool = True
    ) -> torch.Tensor:
        """The members' logits → probabilities, temperature-scaled unless ``calibrated=False``."""
        return combine_probabilities(member_logits, *self.temperatures(calibrated))

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        """Calibrated class probabilities (N, classes) for raw faces (N, 1, H, W, 0-255)."""
        return combine_probabilities(
            self.member_logits(faces), self.member_temperatures, self.temperature
        )
