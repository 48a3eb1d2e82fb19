"""worldengine.video: outputs checked before any work, frames written as they come (memory stays flat)."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from worldengine.errors import WaypointError
from worldengine.video import check_output, open_writer, write_frames

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def frames(count, height=24, width=40, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, height, width, 3), dtype=torch.uint8, generator=generator)


def test_gif_streams_every_frame_at_the_given_rate(tmp_path):
    out = tmp_path / "clip.gif"
    clip = frames(7)
    writer = open_writer(out, fps=15)
    with writer:
        writer.write(clip[:1])     # chunk by chunk, as a rollout decodes them
        writer.write(clip[1:])
    assert writer.count == 7
    with Image.open(out) as gif:
        assert gif.n_frames == 7 and gif.size == (40, 24) and gif.info.get("loop") == 0
        durations = []
        for index in range(gif.n_frames):
            gif.seek(index)
            durations.append(gif.info["duration"])
            shown = np.asarray(gif.convert("RGB")).astype(int)
            # 256-colour palette per frame: close to the source, not a constant picture
            assert np.abs(shown - clip[index].numpy()).mean() < 40 and shown.std() > 20
    assert durations == [70] * 7   # GIF stores 1/100 s: 1000/15 = 66.7 ms -> 70


def test_png_folder_and_webp(tmp_path):
    clip = frames(3)
    write_frames(clip, tmp_path / "pngs", fps=10)
    stored = np.stack([np.asarray(Image.open(p)) for p in sorted((tmp_path / "pngs").glob("frame_*.png"))])
    assert np.array_equal(stored, clip.numpy())
    write_frames(clip, tmp_path / "clip.webp", fps=10)
    with Image.open(tmp_path / "clip.webp") as webp:
        assert webp.n_frames == 3


def test_bad_outputs_fail_before_any_frame(tmp_path, monkeypatch):
    with pytest.raises(WaypointError, match=r"unknown output type '\.avi'.*\.gif"):
        check_output(tmp_path / "x.avi")
    monkeypatch.setitem(sys.modules, "av", None)     # PyAV not installed
    with pytest.raises(WaypointError, match=r"needs PyAV: pip install 'comfyui-waypoint\[video\]'"):
        open_writer(tmp_path / "x.mp4", fps=30)
    (tmp_path / "taken.gif").mkdir()
    with pytest.raises(WaypointError, match="exists and is a folder"):
        check_output(tmp_path / "taken.gif")
    with pytest.raises(WaypointError, match="fps must be > 0"):
        open_writer(tmp_path / "y.gif", fps=0)
    with pytest.raises(WaypointError, match=r"\[T, H, W, 3\] uint8"):
        open_writer(tmp_path / "z.gif", fps=10).write(torch.zeros(2, 8, 8, 3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.gif"]   # nothing was created


def test_mp4_when_pyav_is_installed(tmp_path):
    av = pytest.importorskip("av", reason="PyAV is the optional [video] extra")
    write_frames(frames(5, 24, 41), tmp_path / "clip.mp4", fps=15)
    with av.open(str(tmp_path / "clip.mp4")) as container:
        decoded = list(container.decode(video=0))
    assert len(decoded) == 5 and (decoded[0].width, decoded[0].height) == (40, 24)


PEAK_RSS = textwrap.dedent("""
    import json, resource, sys, torch
    from worldengine.video import open_writer
    out, count = sys.argv[1], int(sys.argv[2])
    chunk = torch.randint(0, 256, (4, 120, 160, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open_writer(out, fps=60) as writer:
        for _ in range(count // 4):
            writer.write(chunk)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"grew_kib": after - before, "frames": writer.count}))
""")


def peak_growth_mib(out, count: int) -> float:
    """How much the peak RSS of a fresh process grows while `count` 120x160 frames stream into `out`."""
    result = subprocess.run([sys.executable, "-c", PEAK_RSS, str(out), str(count)], capture_output=True,
                            text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["frames"] == count
    return report["grew_kib"] / 1024


@pytest.mark.parametrize("name", ["clip.gif", "pngs"])
def test_streaming_memory_stays_flat(tmp_path, name):
    # The 360 more frames of the long run are 19.8 MiB if held; streamed, the peak barely moves.
    short, long = peak_growth_mib(tmp_path / "a" / name, 40), peak_growth_mib(tmp_path / "b" / name, 400)
    held = 360 * 120 * 160 * 3 / 2 ** 20
    print(f"\n{name}: peak RSS growth {short:.1f} MiB for 40 frames, {long:.1f} MiB for 400 ({held:.1f} if held)")
    assert long - short < held / 4, (short, long)
