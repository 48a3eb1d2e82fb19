"""`python -m worldengine {replay,rollout,bench}`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from worldengine.errors import WaypointError
from worldengine.options import Compile, DType, FitMode, Quant
from worldengine.prompt_encoder import DEFAULT_ENCODER_URI


def _common(parser: argparse.ArgumentParser):
    parser.add_argument("--dtype", default="float32", choices=DType.values(),
                        help="compute dtype; bfloat16 is faster on GPUs (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: %(default)s)")


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def cmd_replay(args) -> int:
    from safetensors.torch import save_file

    from worldengine.engine import load_engine
    from worldengine.cli.replay import read_rollout_inputs, replay

    engine = load_engine(args.checkpoint, dtype=args.dtype, device=args.device, quant="none", compile="off")
    tensors, metadata = read_rollout_inputs(args.inputs)
    out = replay(engine, tensors, metadata)
    save_file({k: v.float().contiguous() for k, v in out.items()}, str(args.out),
              metadata={"format": "waypoint-rollout-latents/1", "dtype": args.dtype})
    print(f"wrote {out['latents'].shape[0]} latents {list(out['latents'].shape[1:])} to {args.out}")
    return 0


def cmd_rollout(args) -> int:
    from worldengine.controls import ControlTrack
    from worldengine.engine import load_engine
    from worldengine.cli.rollout import default_track, seed_frames_from_file
    from worldengine.hub import resolve_model
    from worldengine.video import check_output

    check_output(args.out)   # a bad extension or a missing PyAV fails now, not after the rollout
    models_dir = Path(args.models_dir)
    folder, note = resolve_model(args.checkpoint, models_dir)
    if note:
        print(f"[worldengine] {note}")
    engine = load_engine(folder, dtype=args.dtype, device=args.device, quant=args.quant, compile=args.compile)
    print(f"[worldengine] {engine.describe()} from {folder}")
    if args.controls:
        track = ControlTrack.from_file(args.controls)   # a missing/bad file: one-line error
        if args.frames:
            track = ControlTrack(track.frames[: args.frames], track.seed)
    else:
        track = default_track(args.frames or 16, seed=args.seed)
    ae = engine.require_autoencoder()
    seed_image = args.seed_image
    if seed_image is None and (folder / "seed.png").is_file():
        seed_image = folder / "seed.png"   # a model folder may ship a frame of its own world
    seed = seed_frames_from_file(seed_image, ae.pixel_size)
    prompt = None
    if engine.config.has_prompt:
        from worldengine.prompt_encoder import PromptEncoder
        encoder = PromptEncoder.from_pretrained(args.prompt_encoder, models_dir=models_dir, device=engine.device)
        prompt = encoder.encode(args.prompt)[0]
    return _write_rollout(engine, seed, track, prompt, args)


def _write_rollout(engine, seed, track, prompt, args) -> int:
    """Stream the rollout's frames into the output as they are decoded, with a progress bar."""
    from worldengine.cli.rollout import ProgressBar, playback_fps, rollout_chunks
    from worldengine.video import open_writer

    fps = args.fps or playback_fps(engine)
    writer, progress = open_writer(args.out, fps), ProgressBar(len(track))
    try:
        for chunk in rollout_chunks(engine, seed, track, fit=args.fit, prompt_emb=prompt, progress=progress):
            writer.write(chunk)
    finally:
        progress.close()
        writer.close()
    print(f"[worldengine] wrote {writer.count} frames ({len(track)} latent steps, {fps:g} fps) to {writer.path}")
    return 0


def cmd_bench(argv: list[str]) -> int:
    from worldengine.cli.bench import main

    return main(argv) or 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m worldengine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    replay = sub.add_parser("replay", help="replay an oracle-format inputs file, write the latents")
    replay.add_argument("checkpoint")
    replay.add_argument("inputs")
    replay.add_argument("--out", required=True)
    _common(replay)
    rollout = sub.add_parser(
        "rollout", help="seed image + control track -> video or PNG frames",
        description="Seed a world from an image, step it along a control track, write the decoded frames.",
        epilog="Without --controls the rollout walks forward (W) for the first half of --frames, then keeps "
               "walking while turning left. Without --seed-image it starts from the model folder's seed.png "
               "when there is one (the toy world ships one), else from a synthetic horizon.")
    rollout.add_argument("checkpoint", nargs="?", default="default",
                         help="model folder or Hugging Face repo id; 'default' = Overworld/Waypoint-1.5-1B-360P, "
                              "else the offline toy world, else a tiny random model")
    rollout.add_argument("--seed-image", default=None,
                         help="start image (any size; see --fit); default: the model folder's seed.png, "
                              "else a synthetic horizon")
    rollout.add_argument("--controls", default=None, help="control track JSON (waypoint-control-track/1); "
                                                          "default: walk forward, then turn left")
    rollout.add_argument("--frames", type=int, default=None,
                         help="latent steps (each gives the model's frames per latent: 4 on Waypoint-1.5, 1 on "
                              "the toy world and Waypoint-1); default: the whole track, or 16")
    rollout.add_argument("--out", required=True,
                         help="OUT.gif / OUT.webp, OUT.mp4 (needs the [video] extra: PyAV), "
                              "or a folder name for PNG frames")
    rollout.add_argument("--fit", default="crop", choices=FitMode.values(),
                         help="how a seed image of another aspect ratio is fitted (default: %(default)s)")
    rollout.add_argument("--seed", type=int, default=0,
                         help="noise seed when no control track is given (default: %(default)s)")
    rollout.add_argument("--prompt", default=None,
                         help="Waypoint-1 text prompt (needs the [text] extra); default: the model's default prompt")
    rollout.add_argument("--prompt-encoder", default=DEFAULT_ENCODER_URI,
                         help="Waypoint-1: UMT5 encoder folder or Hugging Face repo id (default: %(default)s)")
    rollout.add_argument("--fps", type=_positive_float, default=None,
                         help="playback frame rate of the output; default: the model's own "
                              "(inference_fps: 60 on Waypoint-1.5, 15 on the toy world)")
    rollout.add_argument("--models-dir", default=str(Path.home() / ".cache" / "waypoint-models"),
                         help="where Hugging Face repo ids are downloaded to, as <owner>--<name>/ "
                              "(default: %(default)s)")
    rollout.add_argument("--quant", default=Quant.AUTO.value, choices=Quant.values(),
                         help=" ".join(Quant.__doc__.split()) + " (default: %(default)s)")
    rollout.add_argument("--compile", nargs="?", const=Compile.ON.value, default=Compile.AUTO.value,
                         choices=Compile.values(), help=" ".join(Compile.__doc__.split()) +
                         " A bare --compile means on (default: %(default)s)")
    _common(rollout)
    sub.add_parser("bench", help="benchmark (see `bench --help`)", add_help=False)
    sub.add_parser("bench-kernels", help="linear kernels side by side, ours vs torchao (see `bench-kernels --help`)",
                   add_help=False)
    sub.add_parser("serve", help="live worlds for many players on Ray Serve (see `serve --help`)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        return cmd_bench(argv[1:])
    if argv[:1] == ["serve"]:
        from worldengine.cli.serve import main as serve
        return serve(argv[1:])
    if argv[:1] == ["bench-kernels"]:
        from worldengine.cli.bench_kernels import main as bench_kernels
        return bench_kernels(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return {"replay": cmd_replay, "rollout": cmd_rollout}[args.command](args)
    except WaypointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
