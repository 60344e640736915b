"""The in-memory dataset every ferkit command works on."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ferkit.data.preprocessing import FACE_SIZE  # noqa: F401  (re-exported: ferkit.data.FACE_SIZE)

#: FER2013 class names, in the dataset's label order (0 = Angry ... 6 = Neutral).
FER2013_CLASS_NAMES: tuple[str, ...] = (
    "Angry",
    "Disgust",
    "Fear",
    "Happy",
    "Sad",
    "Surprise",
    "Neutral",
)

#: Values of FER2013's ``Usage`` column.
FER2013_USAGES: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")


@dataclass
class FerDataset:
    """Faces, labels and (optionally) the split each face belongs to.

    Attributes:
        images: uint8 array of shape (N, 48, 48), grayscale faces.
        labels: int64 array of shape (N,), indices into ``class_names``.
        class_names: names of the classes, in label order.
        usage: optional array of N strings (FER2013's ``Usage``: ``Training``,
            ``PublicTest``, ``PrivateTest``, or a folder-split name), or None.
        source: where the data came from (a path), for messages.
        skipped: one description per row or file that was skipped because it was bad and
            skipping was requested (``"line 7: field 'pixels': ..."`` or a file path and why).
        votes: optional float32 array (N, classes): each face's annotator vote distribution
            (FER+), rows summing to 1; ``labels`` is then its majority vote. None for
            single-label data.
        excluded: one description per face that the dataset's protocol left out (FER+ faces
            whose majority vote is ``unknown`` or not a face); they are valid rows, not errors.

    Example:
        >>> import numpy as np
        >>> ds = FerDataset(np.zeros((2, 48, 48), np.uint8), np.array([0, 3]))
        >>> len(ds), ds.class_names[3]
        (2, 'Happy')
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...] = FER2013_CLASS_NAMES
    usage: np.ndarray | None = None
    source: str = "<memory>"
    skipped: list[str] = field(default_factory=list)
    votes: np.ndarray | None = None
    excluded: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.images = np.ascontiguousarray(self.images, dtype=np.uint8)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.class_names = tuple(self.class_names)
        if self.images.ndim != 3:
            raise ValueError(f"images must be (N, H, W), got shape {self.images.shape}")
        if len(self.images) != len(self.labels):
            raise ValueError(
                f"{len(self.images)} images but {len(self.labels)} labels in {self.source}"
            )
        if self.usage is not None:
            self.usage = np.asarray(self.usage, dtype=str)
            if len(self.usage) != len(self.labels):
                raise ValueError(f"usage has {len(self.usage)} entries, expected {len(self)}")
        if self.votes is not None:
            self.votes = np.asarray(self.votes, dtype=np.float32)
            if self.votes.shape != (len(self.labels), len(self.class_names)):
                raise ValueError(
                    f"votes have shape {self.votes.shape}, expected "
                    f"({len(self.labels)}, {len(self.class_names)})"
                )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    def subset(self, indices) -> FerDataset:
        """Return the rows at ``indices`` (an index array or boolean mask) as a new dataset.

        Example:
            >>> import numpy as np
            >>> ds = FerDataset(np.zeros((3, 48, 48), np.uint8), np.array([0, 1, 2]))
            >>> ds.subset(np.array([2])).labels.tolist()
            [2]
        """
        indices = np.asarray(indices)
        return FerDataset(
            images=self.images[indices],
            labels=self.labels[indices],
            class_names=self.class_names,
            usage=None if self.usage is None else self.usage[indices],
            source=self.source,
            votes=None if self.votes is None else self.votes[indices],
        )

    def class_counts(self) -> dict[str, int]:
        """Number of faces per class name, in label order.

        Example:
            >>> import numpy as np
            >>> dataset = FerDataset(np.zeros((2, 48, 48), np.uint8), np.array([3, 3]))
            >>> dataset.class_counts()["Happy"]
            2
        """
        counts = np.bincount(self.labels, minlength=self.num_classes)
        return {name: int(count) for name, count in zip(self.class_names, counts)}
