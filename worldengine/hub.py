"""Find a model: a local folder, or a Hugging Face repo id downloaded into a models folder."""
from __future__ import annotations

import re
from pathlib import Path

from worldengine.errors import WaypointError
from worldengine.paths import TOY_MODEL_DIR

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
MODEL_FILES = ("config.yaml", "model.safetensors")
DEFAULT_MODEL = "Overworld/Waypoint-1.5-1B-360P"

KNOWN_MODELS = {
    "Overworld/Waypoint-1.5-1B-360P": "Waypoint-1.5 1B, 360P (TAEHV 1.5 autoencoder from Overworld-Models/taehv1_5)",
    "Overworld/Waypoint-1.5-1B": "Waypoint-1.5 1B, 720P (TAEHV 1.5 autoencoder from Overworld-Models/taehv1_5)",
    "Overworld/Waypoint-1-Small": "Waypoint-1 Small, text-conditioned (Waypoint-1 AE, UMT5-XL prompts)",
}


def is_repo_id(source: str) -> bool:
    return bool(REPO_ID.match(source)) and not Path(source).exists()


def local_folder_for(repo_id: str, models_dir: str | Path) -> Path:
    return Path(models_dir) / repo_id.replace("/", "--")


def resolve_model_folder(source: str | Path, models_dir: str | Path | None = None) -> Path:
    """A folder holding config.yaml + model.safetensors. Repo ids are downloaded into models_dir."""
    path = Path(source).expanduser()
    if not path.is_absolute() and ".." in path.parts:   # refused whether or not it exists: reveals nothing
        raise WaypointError(f"model {str(source)[:200]!r}: a relative name may not leave its folder ('..'); "
                            "type the absolute path of a model folder elsewhere")
    if path.is_dir():
        _check_folder(path)
        return path
    text = str(source)
    if not is_repo_id(text):
        raise WaypointError(f"model {text!r} is neither a folder nor a Hugging Face repo id (owner/name)")
    if models_dir is None:
        raise WaypointError(f"to download {text!r} a models folder is needed (models_dir)")
    target = local_folder_for(text, models_dir)
    if target.is_dir() and all((target / f).is_file() for f in MODEL_FILES):
        return target
    download_repo(text, target, patterns=list(MODEL_FILES))
    _check_folder(target)
    return target


def download_repo(repo_id: str, target: Path, patterns: list[str]) -> Path:
    """snapshot_download into `target`; every failure becomes a WaypointError saying what to put where."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise WaypointError("huggingface_hub is not installed; pip install huggingface_hub") from None
    try:
        snapshot_download(repo_id=repo_id, local_dir=str(target), allow_patterns=patterns)
    except Exception as err:  # network, auth, missing repo: all end the same way for the user
        raise WaypointError(
            f"could not download {repo_id!r} ({type(err).__name__}: {err}). If this machine is offline, "
            f"download the files {patterns} of https://huggingface.co/{repo_id} elsewhere and put them "
            f"in {target}") from None
    return target


def _check_folder(folder: Path):
    missing = [name for name in MODEL_FILES if not (folder / name).is_file()]
    if missing:
        raise WaypointError(f"model folder {folder} lacks {missing}; a Waypoint model folder holds "
                            f"{list(MODEL_FILES)} (plus its autoencoder files)")


# What a model folder must hold, as said to a user whose copy is missing (the README's model table).
_TAEHV_FILES = "config.yaml, model.safetensors and taehv1_5.safetensors (from Overworld-Models/taehv1_5)"
NEEDED_FILES = {
    "Overworld/Waypoint-1.5-1B-360P": _TAEHV_FILES,
    "Overworld/Waypoint-1.5-1B": _TAEHV_FILES,
    "Overworld/Waypoint-1-Small": "config.yaml, model.safetensors, encoder.safetensors, decoder.safetensors, "
                                  "encoder_conf.yml and decoder_conf.yml",
}


def missing_model_note(repo_id: str, models_dir: str | Path, instead: str) -> str:
    """One line for a user whose model is missing: where its files go, which files, what runs instead."""
    needs = NEEDED_FILES.get(repo_id, "config.yaml, model.safetensors and its autoencoder files")
    return (f"{repo_id} is not installed (and could not be downloaded), so this runs {instead}; for the real "
            f"model put {needs} in {local_folder_for(repo_id, models_dir)}")


def resolve_model(source: str | None, models_dir: Path) -> tuple[Path, str]:
    """(folder, note). `None`/"default": the real default model, else the toy world, else a tiny random
    model; the note (one line, "" for the real model) says which ran instead and how to get the real one."""
    if source not in (None, "default"):
        return resolve_model_folder(source, models_dir), ""
    try:
        return resolve_model_folder(DEFAULT_MODEL, models_dir), ""
    except WaypointError:
        pass   # offline or not installed: the note below says what to put where
    if (TOY_MODEL_DIR / "model.safetensors").is_file():
        return TOY_MODEL_DIR, missing_model_note(DEFAULT_MODEL, models_dir,
                                                 f"the shipped offline toy world ({TOY_MODEL_DIR})")
    from worldengine.synthetic import write_tiny_checkpoint

    folder = models_dir / "tiny-random"
    if not (folder / "model.safetensors").is_file():
        write_tiny_checkpoint(folder)
    return folder, missing_model_note(DEFAULT_MODEL, models_dir,
                                      "a tiny RANDOM model (its frames are noise, not a world)")
