"""Face alignment: from a detector's 5 landmarks to a crop framed like FER2013's faces.

FER2013's 48x48 faces are roughly registered: eyes level near row 18, eye centres ~18 px
apart, mouth near row 37. A detector's box is a different framing (YuNet's box is taller and
reaches below the chin), and a tilted head stays tilted in a box crop. :func:`align_face` maps
the landmarks onto :data:`FER2013_LANDMARKS` with a similarity transform (rotation, uniform
scale, shift; no shear), so the eye line is level and the face has FER2013's scale and
position, then hands the result to the one eval preprocessing
(:func:`ferkit.data.preprocessing.to_face_array`).
"""

from __future__ import annotations

import numpy as np

from ferkit.data.preprocessing import FACE_SIZE, to_face_array
from ferkit.faces.detection import FaceBox, crop_face

#: Where YuNet puts its 5 landmarks (right eye, left eye, nose tip, right and left mouth
#: corners; the subject's right is the image's left) on FER2013 faces, in 48x48 pixels.
#: Measured with YuNet 2023mar on 3,000 FER2013 Training faces (upscaled 4x, padded with gray;
#: 2,858 found): the per-point medians, made left-right symmetric about x = 24.
FER2013_LANDMARKS = np.array(
    [[14.8, 18.3], [33.2, 18.3], [24.0, 28.2], [16.4, 36.9], [31.6, 36.9]], dtype=np.float64
)
#: An aligned face is warped at up to this many times the model's input size before the eval
#: preprocessing shrinks it (area averaging, as for box crops), so large faces do not alias.
MAX_OVERSAMPLING = 4


def similarity_transform(source, target) -> np.ndarray:
    """The 2x3 rotation + uniform scale + shift that best maps ``source`` points onto ``target``.

    Least squares (Umeyama's method, reflections excluded), for (N, 2) point arrays, N >= 2.

    Example:
        >>> import numpy as np
        >>> points = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> np.round(similarity_transform(points, 2 * points + 5), 6).tolist()
        [[2.0, 0.0, 5.0], [0.0, 2.0, 5.0]]
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    source_mean, target_mean = source.mean(0), target.mean(0)
    source_centred, target_centred = source - source_mean, target - target_mean
    covariance = target_centred.T @ source_centred / len(source)
    left, singular, right = np.linalg.svd(covariance)
    sign = np.eye(2)
    if np.linalg.det(left) * np.linalg.det(right) < 0:  # would be a reflection
        sign[1, 1] = -1
    rotation = left @ sign @ right
    variance = (source_centred**2).sum() / len(source)
    scale = float((singular * np.diag(sign)).sum() / variance) if variance > 0 else 1.0
    shift = target_mean - scale * rotation @ source_mean
    return np.hstack([scale * rotation, shift[:, None]])


def align_face(image: np.ndarray, landmarks, size: int = FACE_SIZE) -> np.ndarray:
    """A uint8 (size, size) gray face, rotated, scaled and centred to FER2013's framing.

    Args:
        image: uint8 gray or RGB photo.
        landmarks: 5 (x, y) points in the photo's pixels, in YuNet's order.
        size: the model's input side.

    Example:
        >>> import numpy as np
        >>> from ferkit.faces.alignment import FER2013_LANDMARKS
        >>> photo = np.zeros((200, 200), np.uint8)
        >>> align_face(photo, FER2013_LANDMARKS * 3 + 20).shape
        (48, 48)
    """
    import cv2

    landmarks = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    # Warp at the face's own resolution (capped), then let the eval preprocessing shrink it.
    photo_to_frame = similarity_transform(landmarks, FER2013_LANDMARKS)
    scale = float(np.hypot(*photo_to_frame[:, 0]))  # frame pixels per photo pixel
    work_side = int(np.clip(round(FACE_SIZE / max(scale, 1e-6)), size, MAX_OVERSAMPLING * size))
    matrix = similarity_transform(landmarks, FER2013_LANDMARKS * (work_side / FACE_SIZE))
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]
    warped = cv2.warpAffine(
        np.ascontiguousarray(image), matrix, (work_side, work_side), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )  # fmt: skip
    return to_face_array(warped, size)


def aligned_square(landmarks) -> tuple[float, float, float, float]:
    """The photo region an aligned crop (:func:`align_face`) covers: ``(x, y, side, angle)``,
    a square of ``side`` photo pixels whose top-left corner is at (x, y) before it is turned
    by ``angle`` degrees about its centre (clockwise on screen, the image's y axis pointing
    down, as a canvas' ``rotate`` turns). For drawing a crop's saliency map on the photo.

    Example:
        >>> from ferkit.faces.alignment import FER2013_LANDMARKS
        >>> [round(value, 3) for value in aligned_square(FER2013_LANDMARKS * 3 + 20)]
        [20.0, 20.0, 144.0, 0.0]
    """
    import cv2

    landmarks = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    frame_to_photo = cv2.invertAffineTransform(similarity_transform(landmarks, FER2013_LANDMARKS))
    centre = frame_to_photo @ np.array([FACE_SIZE / 2, FACE_SIZE / 2, 1.0])
    along_x = frame_to_photo[:, 0]  # where the crop's x axis points in the photo
    side = FACE_SIZE * float(np.hypot(*along_x))
    angle = float(np.degrees(np.arctan2(along_x[1], along_x[0])))
    return float(centre[0] - side / 2), float(centre[1] - side / 2), side, angle


def face_crop(
    image: np.ndarray,
    box: FaceBox,
    size: int = FACE_SIZE,
    margin: float = 0.2,
    align: bool = True,
) -> np.ndarray:
    """The classifier's input for one detected face: aligned when it has landmarks and
    ``align`` is on, else the square box crop with ``margin``
    (:func:`ferkit.faces.detection.crop_face`).

    Example:
        >>> import numpy as np
        >>> face_crop(np.zeros((90, 90), np.uint8), FaceBox(10, 10, 50, 50, 1.0)).shape
        (48, 48)
    """
    if align and box.landmarks is not None:
        return align_face(image, box.landmarks, size)
    return crop_face(image, box, margin, size)
