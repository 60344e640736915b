"""Faces in a photo: detection (YuNet, Haar), the detector file, alignment from the 5 landmarks
and the face check that drops a detector's false faces.

Modules: :mod:`~ferkit.faces.detection`, :mod:`~ferkit.faces.yunet`,
:mod:`~ferkit.faces.detector_files`, :mod:`~ferkit.faces.alignment`,
:mod:`~ferkit.faces.face_check`. Nothing here imports the classifier: the inference pipeline
(:mod:`ferkit.inference.pipeline`) puts faces and classifier together.

Example:
    >>> from ferkit.faces.detection import FaceBox
    >>> FaceBox(1, 2, 30, 40, score=0.9).width
    30
"""
