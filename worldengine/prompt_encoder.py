"""Waypoint-1 text conditioning: UMT5 encoder embeddings for the prompt cross-attention.

Protocol (as the reference engine): text is cleaned with ``ftfy.fix_text`` (plain NFC when ftfy is not
installed), tokenised with ``padding="max_length", truncation=True, max_length=512``, run through
``UMT5EncoderModel`` and ``last_hidden_state`` is multiplied by the attention mask, so padding rows
are exactly zero. ``pad_mask = attention_mask == 0`` (True = padding row).

``transformers`` (and ``sentencepiece`` for the real UMT5 tokenizer) are optional dependencies:
they are imported only when an encoder is built.
"""

from __future__ import annotations

import unicodedata
from collections import OrderedDict
from pathlib import Path

import torch

from worldengine.errors import WaypointError

DEFAULT_PROMPT = "An explorable world"
DEFAULT_ENCODER_URI = "google/umt5-xl"
DEFAULT_MAX_LENGTH = 512

# Files needed to build tokenizer + encoder; weights in safetensors preferred, .bin as a fallback
# (transformers loads those with weights_only=True).
_HUB_PATTERNS = ["*.json", "*.model", "*.safetensors", "*.txt"]


def fix_text(text: str) -> str:
    """Clean prompt text like the reference: ftfy when importable, else Unicode NFC."""
    try:
        import ftfy  # optional
    except ImportError:
        return unicodedata.normalize("NFC", text)
    return ftfy.fix_text(text)


def _import_transformers():
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise WaypointError(
            "The Waypoint-1 prompt encoder needs the 'transformers' package "
            "(pip install transformers sentencepiece)") from exc
    return transformers


def resolve_encoder_folder(source: str | Path, models_dir: str | Path | None = None,
                           local_files_only: bool = False) -> Path:
    """Find the UMT5 folder for ``source``: a local folder, ``models_dir/<name>``, or a HF repo id.

    A repo id is fetched with huggingface_hub (from its cache when offline). Raises WaypointError
    naming the source when nothing usable is found.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if models_dir is not None:
        for candidate in (Path(models_dir) / str(source), Path(models_dir) / Path(str(source)).name):
            if candidate.is_dir():
                return candidate
    text = str(source)
    if path.is_absolute() or text.startswith((".", "~")) or text.count("/") != 1:
        raise WaypointError(f"prompt encoder folder not found: {text!r} (expected a folder with "
                            "config.json + tokenizer files, or a Hugging Face repo id like "
                            f"{DEFAULT_ENCODER_URI!r})")
    try:
        from huggingface_hub import snapshot_download
        folder = snapshot_download(repo_id=text, allow_patterns=_HUB_PATTERNS + ["*.bin"],
                                   local_files_only=local_files_only)
    except Exception as exc:  # network, auth, missing repo: all user-facing
        raise WaypointError(f"could not get prompt encoder {text!r} from the Hugging Face hub "
                            f"or its local cache ({type(exc).__name__}: {exc}); download it "
                            "while online or pass a local folder") from exc
    return Path(folder)


class PromptEncoder:
    """UMT5 text encoder with a per-prompt cache.

    ``encode(text)`` returns ``(prompt_emb, pad_mask)``: prompt_emb is ``[max_length, P]`` float32
    on CPU with padding rows exactly 0; pad_mask is ``[max_length]`` bool, True = padding.
    """

    def __init__(self, tokenizer, model, max_length: int = DEFAULT_MAX_LENGTH,
                 cache_size: int = 64):
        if max_length < 1:
            raise WaypointError(f"prompt encoder max_length must be >= 1, got {max_length}")
        self.tokenizer = tokenizer
        self.model = model.eval()
        self.max_length = int(max_length)
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    @property
    def embedding_dim(self) -> int:
        """P: the width of one embedding row (2048 for UMT5-XL)."""
        return int(self.model.config.d_model)

    @classmethod
    def from_pretrained(cls, source: str | Path = DEFAULT_ENCODER_URI, *,
                        models_dir: str | Path | None = None, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32, max_length: int = DEFAULT_MAX_LENGTH,
                        local_files_only: bool = False, cache_size: int = 64) -> "PromptEncoder":
        """Load tokenizer + ``UMT5EncoderModel`` from a folder or HF repo id."""
        transformers = _import_transformers()
        folder = resolve_encoder_folder(source, models_dir, local_files_only)
        if not (folder / "config.json").is_file():
            raise WaypointError(f"prompt encoder folder {str(folder)!r} has no config.json")
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
            model = transformers.UMT5EncoderModel.from_pretrained(str(folder), dtype=dtype)
        except Exception as exc:
            raise WaypointError(f"could not load the UMT5 prompt encoder from {str(folder)!r} "
                                f"({type(exc).__name__}: {exc})") from exc
        return cls(tokenizer, model.to(device), max_length=max_length, cache_size=cache_size)

    def encode(self, text: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed one prompt (None or blank -> DEFAULT_PROMPT); cached per cleaned text."""
        if text is not None and not isinstance(text, str):
            raise WaypointError(f"prompt must be a string, got {type(text).__name__}")
        cleaned = fix_text(text) if text and text.strip() else DEFAULT_PROMPT
        hit = self._cache.get(cleaned)
        if hit is not None:
            self._cache.move_to_end(cleaned)
            return hit[0].clone(), hit[1].clone()
        result = self._run(cleaned)
        self._cache[cleaned] = result
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return result[0].clone(), result[1].clone()

    @torch.no_grad()
    def _run(self, cleaned: str) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.tokenizer([cleaned], padding="max_length", truncation=True,
                               max_length=self.max_length, return_tensors="pt")
        device = next(self.model.parameters()).device
        ids = batch["input_ids"].to(device)
        mask = batch["attention_mask"].to(device)
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        # Zero the padding rows exactly (the reference multiplies by the mask).
        emb = (hidden * mask[..., None].to(hidden.dtype))[0].float().cpu()
        pad_mask = (mask[0] == 0).cpu()
        return emb, pad_mask
