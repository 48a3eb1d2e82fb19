"""A ``rewriter`` for ``sanitize()`` backed by a local OpenAI-compatible chat endpoint
(llama.cpp server, Ollama, LM Studio, vLLM: anything serving ``POST {base_url}/chat/completions``).

    rewriter = chat_rewriter("http://127.0.0.1:11434/v1", model="llama3.2")
    sanitize(prompt, rewriter=rewriter)

Only prompts the built-in check flagged reach the endpoint, and ``sanitize`` re-checks the reply
with the built-in check: an unsafe, empty or failed reply falls back to the built-in rewrite.
Standard library only (urllib); bounded time (``timeout``) and size (``MAX_REPLY_BYTES``).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from worldengine.errors import WaypointError

MAX_REPLY_BYTES = 65536
MAX_REWRITE_CHARS = 1000
SYSTEM_PROMPT = (
    "You rewrite prompts for a video world model so they are safe. Keep the scene: place, "
    "weather, time of day, mood, style and camera. Remove or replace anything sexual, any minor "
    "in a sexual or harmful situation, any real person's name or likeness (use a generic role), "
    "branded characters and franchises (use an original description), gore and other harm. "
    "Answer with the rewritten prompt only, in the prompt's language, one line.")


def _endpoint(base_url: str) -> str:
    if not isinstance(base_url, str) or not base_url.strip():
        raise WaypointError("rewriter endpoint: base_url must be a non-empty string")
    url = base_url.strip().rstrip("/")
    if urllib.parse.urlparse(url).scheme not in ("http", "https"):
        raise WaypointError(f"rewriter endpoint {base_url!r}: use an http:// or https:// URL")
    return url if url.endswith("/chat/completions") else url + "/chat/completions"


def _reply_text(raw: bytes) -> str:
    """The first choice's message content of a chat-completions reply."""
    try:
        data = json.loads(raw.decode("utf-8"))
        text = data["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise WaypointError(f"rewriter endpoint: unexpected reply ({type(exc).__name__})") from None
    if not isinstance(text, str):
        raise WaypointError("rewriter endpoint: reply content is not text")
    return " ".join(text.split())[:MAX_REWRITE_CHARS]


def chat_rewriter(base_url: str, model: str = "default", *, api_key: str | None = None,
                  timeout: float = 10.0, system_prompt: str = SYSTEM_PROMPT):
    """A ``rewriter(text, report) -> str`` that asks the endpoint for a safe rewrite.

    ``base_url``: e.g. ``http://127.0.0.1:8080/v1``; ``model``: the served model's name;
    ``api_key``: sent as a bearer token when given. Raises WaypointError on a bad URL now, and
    on HTTP/timeout/format failures when called (``sanitize`` catches those and falls back).
    """
    url = _endpoint(base_url)
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"

    def rewrite(text: str, report: dict) -> str:
        found = ", ".join(report.get("categories", [])) or "unsafe content"
        body = json.dumps({"model": model, "temperature": 0, "max_tokens": 300, "messages": [
            {"role": "system", "content": system_prompt},
            {"role": "user", "content": f"Flagged for: {found}.\nPrompt: {text}"}]}).encode()
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read(MAX_REPLY_BYTES + 1)
        except (urllib.error.URLError, OSError) as exc:
            raise WaypointError(f"rewriter endpoint {url}: {exc}") from None
        if len(raw) > MAX_REPLY_BYTES:
            raise WaypointError(f"rewriter endpoint {url}: reply over {MAX_REPLY_BYTES} bytes")
        return _reply_text(raw)

    return rewrite
