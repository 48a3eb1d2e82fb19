"""Safety Check node: IMAGE in, IMAGE out (flagged frames blocked or blurred) + a JSON report.
Put it before Seed Frame for seed images and after Decode Latent for generated frames.
Behaviour lives in worldengine.sanitize.images; this node maps ComfyUI inputs to one call."""
from __future__ import annotations

import json

CATEGORY = "Waypoint"


class WaypointSafetyCheck:
    DESCRIPTION = ("Classify images with a local nudity detector (NudeNet, the optional [safety] extra) and "
                   "block (black) or blur the flagged ones. Use before Seed Frame for seed images and after "
                   "Decode Latent for generated frames; stride > 1 checks every n-th frame and applies a "
                   "flag to its whole window. Live play's redirect policy (back to the last clean world) "
                   "is an engine option, see docs/safety.md.")

    @classmethod
    def INPUT_TYPES(cls):
        from worldengine.sanitize.classifier import CLASSIFIERS
        from worldengine.sanitize.images import BATCH_POLICIES
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "Frames [N, H, W, 3] to check."}),
                "policy": ([p.value for p in BATCH_POLICIES], {
                    "default": BATCH_POLICIES[0].value,
                    "tooltip": "block: flagged frames become black; blur: pixelated beyond recognition."}),
                "classifier": (list(CLASSIFIERS), {"tooltip": "Local image classifier."}),
                "threshold": ("FLOAT", {"default": 0.5, "min": 0.05, "max": 1.0, "step": 0.05,
                                        "tooltip": "Score at or above which a frame is flagged."}),
                "stride": ("INT", {"default": 1, "min": 1, "max": 64,
                                   "tooltip": "Check every n-th frame (a flag covers its n frames)."}),
            },
        }

    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("images", "report")
    OUTPUT_TOOLTIPS = ("The frames, flagged ones blocked or blurred.",
                       "JSON: classifier, policy, flagged frame indexes, highest score, time taken.")
    FUNCTION = "check"
    CATEGORY = CATEGORY

    def check(self, images, policy="block", classifier="nudenet", threshold=0.5, stride=1):
        from worldengine.sanitize.classifier import get_classifier
        from worldengine.sanitize.images import SafetyCheck
        result = SafetyCheck(get_classifier(classifier), policy, threshold, stride).apply(images)
        return (result.images, json.dumps(result.report, sort_keys=True))


NODE_CLASS_MAPPINGS = {"WaypointSafetyCheck": WaypointSafetyCheck}
NODE_DISPLAY_NAME_MAPPINGS = {"WaypointSafetyCheck": "Safety Check (Waypoint)"}
