"""Mid-generation redirection for live play: on a flagged frame, go back to the last clean
snapshot and keep playing (the technical report's "mid-generation redirection").

    guard = LiveGuard(SafetyCheck(classifier, "redirect"), stride=4)
    guard.reset(session.snapshot(), step=0)            # the seed world counts as clean
    verdict = guard.after_step(session, frames, step)  # after every step, frames [k, 3, H, W]

Live Play builds it from its ``safety`` input with ``live_guard("redirect")`` (None for "off").

Every ``stride``-th step is classified. A clean checked step becomes the new restore point
(one ``session.snapshot()`` per check, so the stride also bounds that cost). A flagged step
restores the last restore point into ``session`` and returns the frames blacked out, so the
flagged frames are never shown; the caller continues stepping from the restored world.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from worldengine.errors import Choice, WaypointError
from worldengine.sanitize.images import Policy, SafetyCheck

LIVE_STRIDE = 4  # steps between checks: at ~30-90 ms a frame, checking every step would halve the rate


class LiveSafety(Choice):
    """Live Play's safety input. off: no check; redirect: ``LiveGuard`` with the NudeNet classifier
    (the optional [safety] extra; asking for it without the extra is refused, never ignored)."""
    OFF = "off"
    REDIRECT = "redirect"

    @classmethod
    def label(cls) -> str:
        return "live safety"

    @classmethod
    def values(cls) -> list[str]:
        return [member.value for member in cls]


@dataclass
class GuardVerdict:
    """``action``: "unchecked", "clean" or "redirected"; ``frames`` to show; ``restored_step``:
    the step count of the restored world (redirected only)."""
    action: str
    frames: torch.Tensor
    score: float | None = None
    restored_step: int | None = None


class LiveGuard:
    """Redirect policy over any session with ``snapshot()`` and ``restore(snapshot)``."""

    def __init__(self, check: SafetyCheck, stride: int = 4):
        if int(stride) < 1:
            raise WaypointError(f"live safety stride must be >= 1, got {stride}")
        self.check, self.stride = check, int(stride)
        self._clean = None
        self._clean_step = 0
        self.redirects = 0

    @property
    def restore_point(self):
        """(snapshot, step count) a flagged step goes back to; (None, 0) before ``reset``."""
        return self._clean, self._clean_step

    def reset(self, snapshot, step: int = 0) -> None:
        """Set the restore point (the base world when play starts or resets)."""
        self._clean, self._clean_step = snapshot, int(step)

    def after_step(self, session, frames: torch.Tensor, step: int) -> GuardVerdict:
        """``frames`` [k, 3, H, W] in 0..1 rendered for step number ``step`` (1 = first step)."""
        if self._clean is None:
            raise WaypointError("LiveGuard.reset(snapshot) must set a clean world before play")
        if step % self.stride:
            return GuardVerdict("unchecked", frames)
        flagged, scores = self.check.flags(frames.permute(0, 2, 3, 1))
        score = max(scores.values(), default=0.0)
        if not flagged:
            self._clean, self._clean_step = session.snapshot(), int(step)
            return GuardVerdict("clean", frames, score)
        session.restore(self._clean)
        self.redirects += 1
        return GuardVerdict("redirected", torch.zeros_like(frames), score, self._clean_step)

    def on_live_step(self, live, frames: torch.Tensor) -> torch.Tensor:
        """The whole redirect for a ``LiveSession`` step (called from its stepping thread under
        its lock): check, and on a flag restore the world, keep the track only up to the
        restored world and stop recording (so it still replays), restart the preview renderer
        (its stream state belongs to the undone steps), and tell the client with a ``safety``
        event. Returns the frames to show."""
        verdict = self.after_step(live.session, frames, live.steps_since_base)
        if verdict.action == "redirected":
            del live.track_frames[verdict.restored_step:]
            live.recording = False
            live.renderer = live._renderer_factory(live.settings.preview)
            live._events({"type": "safety", "action": "redirected", "score": round(verdict.score, 4),
                          "restored_step": verdict.restored_step, "redirects": self.redirects,
                          "message": f"safety: a flagged frame was hidden; the world went back to "
                                     f"step {verdict.restored_step} (recording stopped)"})
        return verdict.frames


def live_guard(safety, classifier: str = "nudenet", stride: int = LIVE_STRIDE) -> LiveGuard | None:
    """The guard for a Live Play ``safety`` value: None for off, else a redirect ``LiveGuard``.
    The classifier is loaded here (``ready()``), so a missing extra fails when play is set up,
    with the install command, instead of on the first checked frame."""
    if LiveSafety.parse(safety) is LiveSafety.OFF:
        return None
    from worldengine.sanitize.classifier import get_classifier
    model = get_classifier(classifier)
    if hasattr(model, "ready"):
        model.ready()
    return LiveGuard(SafetyCheck(model, Policy.REDIRECT), stride=stride)
