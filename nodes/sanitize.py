"""Sanitize Prompt node: text in, safe text + a JSON report out. Behaviour lives in
worldengine.sanitize; this node only maps ComfyUI inputs to one call."""
from __future__ import annotations

CATEGORY = "Waypoint"


class WaypointSanitizePrompt:
    DESCRIPTION = ("Make a text prompt safe for a world model (or any text encoder): undoes obfuscation "
                   "(look-alike letters, leetspeak, spaced or hidden characters), finds explicit content, "
                   "minors in sexual or harmful situations, real people (listed or by name shape), "
                   "branded IP, gore and other unsafe content in 13 languages, and rewrites that element "
                   "into a safe generic description while keeping the scene. Very short prompts are "
                   "enriched. Runs offline in about a millisecond; same text, same output. Optionally a "
                   "local OpenAI-compatible chat endpoint rewrites flagged prompts; its answer is checked "
                   "again and the built-in rewrite is used when it fails or is still unsafe.")

    @classmethod
    def INPUT_TYPES(cls):
        from worldengine.sanitize import Strictness
        default = Strictness.STANDARD  # listed first: the combo's default
        return {
            "required": {
                "text": ("STRING", {"multiline": True, "default": "An explorable world",
                                    "tooltip": "The user's prompt."}),
                "strictness": ([s.value for s in sorted(Strictness, key=lambda s: s is not default)], {
                    "default": default.value,
                    "tooltip": "relaxed: explicit content, minors, gore, celebrities, franchises; "
                               "standard: + brands and typo-tolerant matching; strict: + suggestive "
                               "wording and non-graphic violence (blood, corpses)."}),
                "enrich_short": ("BOOLEAN", {
                    "default": True,
                    "tooltip": "Expand prompts of a few words into a fuller scene description."}),
            },
            "optional": {
                "rewriter_url": ("STRING", {
                    "default": "",
                    "tooltip": "Optional local OpenAI-compatible endpoint (e.g. "
                               "http://127.0.0.1:11434/v1) that rewrites flagged prompts. Empty: "
                               "built-in rewrite only."}),
                "rewriter_model": ("STRING", {"default": "default",
                                              "tooltip": "Model name the endpoint serves."}),
            },
        }

    RETURN_TYPES = ("STRING", "STRING")
    RETURN_NAMES = ("text", "report")
    OUTPUT_TOOLTIPS = ("The sanitized prompt (feed it to Set World Prompt or any text encoder).",
                       "JSON: categories found, matched terms, whether it was rewritten or enriched.")
    FUNCTION = "sanitize"
    CATEGORY = CATEGORY

    def sanitize(self, text, strictness="standard", enrich_short=True, rewriter_url="",
                 rewriter_model="default"):
        from worldengine.sanitize import sanitize
        rewriter = None
        if rewriter_url and rewriter_url.strip():
            from worldengine.sanitize.llm import chat_rewriter
            rewriter = chat_rewriter(rewriter_url, model=rewriter_model or "default")
        result = sanitize(text, strictness, enrich_short=bool(enrich_short), rewriter=rewriter)
        return (result.text, result.report_json())


NODE_CLASS_MAPPINGS = {"WaypointSanitizePrompt": WaypointSanitizePrompt}
NODE_DISPLAY_NAME_MAPPINGS = {"WaypointSanitizePrompt": "Sanitize Prompt (Waypoint)"}
