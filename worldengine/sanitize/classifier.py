"""Image classifiers for the safety checks: anything with ``scores(frames) -> list[float]``.

``frames`` are uint8 RGB arrays ``[N, H, W, 3]`` (numpy); a score is the probability-like
confidence in 0..1 that a frame shows nudity. ``NudeNetClassifier`` runs NudeNet's bundled
ONNX detector (the ``nudenet`` package, AGPL-3.0 per its LICENSE file: an optional extra,
``pip install "comfyui-waypoint[safety]"``, imported only when used). Tests use stand-ins
with the same method.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from worldengine.errors import WaypointError

# NudeNet labels that count as unsafe (its *_COVERED, FACE_* and FEET_* labels do not).
EXPOSED = ("FEMALE_BREAST_EXPOSED", "FEMALE_GENITALIA_EXPOSED", "MALE_GENITALIA_EXPOSED",
           "BUTTOCKS_EXPOSED", "ANUS_EXPOSED")
INSTALL_HINT = 'pip install "comfyui-waypoint[safety]"  (or: pip install nudenet)'


class FrameClassifier(Protocol):
    name: str

    def scores(self, frames: np.ndarray) -> list[float]:
        """uint8 RGB [N, H, W, 3] -> one score in 0..1 per frame."""


def nudenet_available() -> bool:
    """True when the optional ``nudenet`` package (and its onnxruntime) imports."""
    try:
        import nudenet  # noqa: F401
    except ImportError:
        return False
    return True


class NudeNetClassifier:
    """NudeNet's 320n detector: score = the highest confidence of an ``EXPOSED`` label.

    Built lazily (the ONNX session loads on the first frame); raises WaypointError naming the
    install command when ``nudenet`` is missing.
    """

    name = "nudenet"

    def __init__(self, labels: tuple[str, ...] = EXPOSED):
        self.labels = frozenset(labels)
        self._detector = None

    def _load(self):
        if self._detector is None:
            try:
                from nudenet import NudeDetector
            except ImportError as exc:
                raise WaypointError(f"the nudenet image classifier is not installed ({exc}); "
                                    f"install it with: {INSTALL_HINT}") from None
            self._detector = NudeDetector()
        return self._detector

    def ready(self) -> None:
        """Load the detector now (raises WaypointError naming the install command without it)."""
        self._load()

    def scores(self, frames: np.ndarray) -> list[float]:
        detector = self._load()
        out = []
        for frame in frames:
            bgr = np.ascontiguousarray(frame[..., ::-1])  # NudeNet reads OpenCV's BGR order
            found = detector.detect(bgr)
            out.append(max((d["score"] for d in found if d["class"] in self.labels), default=0.0))
        return out


CLASSIFIERS = {"nudenet": NudeNetClassifier}


def get_classifier(name: str) -> FrameClassifier:
    """A classifier by name (``CLASSIFIERS``)."""
    try:
        return CLASSIFIERS[name]()
    except KeyError:
        raise WaypointError(f"unknown image classifier {name!r}; choose one of: "
                            f"{', '.join(CLASSIFIERS)}") from None
