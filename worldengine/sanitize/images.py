"""Safety checks for images: seed images before a world is seeded, decoded frames, live frames.

    check = SafetyCheck(get_classifier("nudenet"), policy="blur", threshold=0.5, stride=1)
    result = check.apply(images)        # IMAGE [N, H, W, 3] float 0..1 -> CheckResult
    result.images, result.flagged, result.report

Policies (``Policy``): ``block`` replaces a flagged frame with black (``check_seed`` refuses a
flagged seed image instead), ``blur`` pixelates it beyond recognition, ``redirect`` is for live
play (``guard.LiveGuard``: restore the last clean snapshot); on a batch it blocks. ``stride``
checks every n-th frame; the frames up to the next checked one take its verdict, so a flagged
check covers its whole stride window. Pure torch/numpy; the classifier is the only heavy part.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from worldengine.errors import Choice, WaypointError
from worldengine.sanitize.classifier import FrameClassifier

BLUR_CELLS = 12  # a blurred frame keeps only ~12 cells along its short side: colours, no shapes


class Policy(Choice):
    BLOCK = "block"
    BLUR = "blur"
    REDIRECT = "redirect"

    @classmethod
    def label(cls) -> str:
        return "safety policy"


BATCH_POLICIES = (Policy.BLOCK, Policy.BLUR)  # what a frame batch can do (redirect needs a world)


@dataclass
class CheckResult:
    """``images``: the frames after the policy; ``flagged``: frame indexes it changed."""
    images: torch.Tensor
    flagged: list[int]
    scores: dict[int, float]
    report: dict = field(default_factory=dict)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """IMAGE [N, H, W, 3] float 0..1 (torch) -> uint8 numpy, the classifiers' input."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] != 3:
        shape = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise WaypointError(f"safety check expects images [N, H, W, 3], got {shape}")
    return (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def blur(images: torch.Tensor) -> torch.Tensor:
    """Pixelate [N, H, W, 3] frames to ~BLUR_CELLS cells on the short side, back to full size."""
    x = images.permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    cell = max(1, min(h, w) // BLUR_CELLS)
    small = F.avg_pool2d(x, cell, ceil_mode=True)
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False) \
        .permute(0, 2, 3, 1).to(images.dtype)


class SafetyCheck:
    """Classify frames on a stride and apply a policy to the flagged ones."""

    def __init__(self, classifier: FrameClassifier, policy="block", threshold: float = 0.5,
                 stride: int = 1):
        self.classifier = classifier
        self.policy = Policy.parse(policy)
        if not 0.0 < float(threshold) <= 1.0:
            raise WaypointError(f"safety threshold must be in (0, 1], got {threshold}")
        if int(stride) < 1:
            raise WaypointError(f"safety stride must be >= 1, got {stride}")
        self.threshold, self.stride = float(threshold), int(stride)

    def scores(self, images: torch.Tensor) -> dict[int, float]:
        """Scores of the checked frames (every ``stride``-th, from 0) by frame index."""
        checked = list(range(0, images.shape[0], self.stride))
        values = self.classifier.scores(to_uint8(images[checked])) if checked else []
        return dict(zip(checked, (float(v) for v in values)))

    def flags(self, images: torch.Tensor) -> tuple[list[int], dict[int, float]]:
        """Flagged frame indexes (stride windows of flagged checks) and the scores."""
        scores = self.scores(images)
        flagged = sorted({i for k, s in scores.items() if s >= self.threshold
                          for i in range(k, min(k + self.stride, images.shape[0]))})
        return flagged, scores

    def apply(self, images: torch.Tensor) -> CheckResult:
        """Check a batch and apply the policy (redirect has no world here: it blocks)."""
        start = time.perf_counter()
        flagged, scores = self.flags(images)
        out = images
        if flagged:
            out = images.clone()
            index = torch.tensor(flagged)
            out[index] = blur(images[index]) if self.policy is Policy.BLUR else 0.0
        report = {"classifier": self.classifier.name, "policy": self.policy.value,
                  "threshold": self.threshold, "stride": self.stride, "frames": int(images.shape[0]),
                  "checked": len(scores), "flagged": flagged,
                  "max_score": round(max(scores.values(), default=0.0), 4),
                  "ms": round(1000 * (time.perf_counter() - start), 1)}
        return CheckResult(out, flagged, scores, report)

    def check_seed(self, image: torch.Tensor) -> CheckResult:
        """A seed image (every frame checked): blur policy blurs, any other refuses a flagged one."""
        result = SafetyCheck(self.classifier, self.policy, self.threshold, 1).apply(image)
        if result.flagged and self.policy is not Policy.BLUR:
            raise WaypointError(f"seed image refused by the safety check ({self.classifier.name} "
                                f"score {result.report['max_score']} >= {self.threshold})")
        return result
