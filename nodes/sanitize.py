"""Sanitize Prompt node: text in, safe text + a JSON report out. Behaviour lives in
worldengine.sanitize; this node only maps ComfyUI inputs to one call."""
from __future__ import annotations

CATEGORY = "Waypoint"
STRICTNESS = ("standard", "relaxed", "strict")  # first = default in the combo


class WaypointSanitizePrompt:
    DESCRIPTION = ("Make a text prompt safe for a world model: undoes obfuscation (look-alike letters, "
                   "leetspeak, spaced or hidden characters), finds explicit, minor-related, celebrity, "
                   "branded-IP, gory and other unsafe content, and rewrites that element into a safe "
                   "generic description while keeping the scene. Very short prompts are enriched into a "
                   "scene description. Runs offline in about a millisecond; same text, same output.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "text": ("STRING", {"multiline": True, "default": "An explorable world",
                                    "tooltip": "The user's prompt."}),
                "strictness": (list(STRICTNESS), {
                    "default": "standard",
                    "tooltip": "relaxed: explicit content, minors, gore, celebrities, franchises; "
                               "standard: + brands and typo-tolerant matching; strict: + suggestive "
                               "wording and non-graphic violence (blood, corpses)."}),
                "enrich_short": ("BOOLEAN", {
                    "default": True,
                    "tooltip": "Expand prompts of a few words into a fuller scene description."}),
            },
        }

    RETURN_TYPES = ("STRING", "STRING")
    RETURN_NAMES = ("text", "report")
    OUTPUT_TOOLTIPS = ("The sanitized prompt (feed it to Set World Prompt).",
                       "JSON: categories found, matched terms, whether it was rewritten or enriched.")
    FUNCTION = "sanitize"
    CATEGORY = CATEGORY

    def sanitize(self, text, strictness="standard", enrich_short=True):
        from worldengine.sanitize import sanitize
        result = sanitize(text, strictness, enrich_short=bool(enrich_short))
        return (result.text, result.report_json())


NODE_CLASS_MAPPINGS = {"WaypointSanitizePrompt": WaypointSanitizePrompt}
NODE_DISPLAY_NAME_MAPPINGS = {"WaypointSanitizePrompt": "Sanitize Prompt (Waypoint)"}
