"""Image conversion (ComfyUI <-> engine frames, uint8) and fitting to the model's pixel size."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from worldengine.errors import WaypointError
from worldengine.images import (FitMode, display_size, fit_frames, to_comfy, to_display, to_frames,
                                to_uint8)


def test_comfy_float_and_uint8_layouts():
    image = torch.zeros(2, 4, 6, 3)
    image[1, 2, 5] = torch.tensor([0.25, 0.5, 1.0])
    frames = to_frames(image)
    assert frames.shape == (2, 3, 4, 6) and frames.dtype == torch.float32
    assert frames[1, :, 2, 5].tolist() == [0.25, 0.5, 1.0]
    array = np.zeros((4, 6, 3), dtype=np.uint8)  # a single HWC uint8 image
    array[2, 5] = (255, 51, 0)
    frames = to_frames(array)
    assert frames.shape == (1, 3, 4, 6)
    assert torch.allclose(frames[0, :, 2, 5], torch.tensor([1.0, 0.2, 0.0]))
    back = to_comfy(to_frames(image))
    assert back.shape == image.shape and torch.equal(back, image) and back.is_contiguous()


def test_wrong_channel_count_is_named():
    with pytest.raises(WaypointError, match=r"\(1, 8, 8, 4\).*RGBA"):
        to_frames(torch.zeros(1, 8, 8, 4))
    with pytest.raises(WaypointError, match=r"\(8, 8, 1\)|\(1, 8, 8, 1\)"):
        to_frames(np.zeros((8, 8, 1), dtype=np.uint8))
    with pytest.raises(WaypointError, match="3, H, W"):
        to_uint8(torch.zeros(2, 4, 8, 8))


def test_uint8_rounds_and_clamps():
    values = torch.tensor([0.0, 1.0, 0.5, 1.2, -0.1, 0.25, 0.7]).reshape(1, 1, 1, 7).expand(1, 3, 1, 7)
    out = to_uint8(values)
    assert out.dtype == torch.uint8 and out.shape == (1, 1, 7, 3)
    assert out[0, 0, :, 0].tolist() == [0, 255, 128, 255, 0, 64, 178]


def test_fit_same_size_and_16_9_resize():
    frames = torch.rand(2, 3, 90, 160)
    assert fit_frames(frames, (90, 160)) is frames
    resized = fit_frames(frames, (256, 512))  # 16:9 into the 360P TAEHV size: plain bilinear, no error
    expected = F.interpolate(frames, size=(256, 512), mode="bilinear", align_corners=False)
    assert torch.equal(resized, expected)
    assert fit_frames(torch.rand(1, 3, 480, 854), (360, 640)).shape == (1, 3, 360, 640)  # ~16:9 counts


def test_non_16_9_needs_a_policy():
    square = torch.rand(1, 3, 300, 300)
    with pytest.raises(WaypointError, match=r"300x300.*crop.*stretch.*pad"):
        fit_frames(square, (360, 640))
    with pytest.raises(WaypointError, match="unknown fit mode 'zoom'"):
        fit_frames(square, (360, 640), "zoom")
    for mode in FitMode:
        if mode is not FitMode.ERROR:
            assert fit_frames(square, (360, 640), mode).shape == (1, 3, 360, 640)


def test_crop_keeps_centre_and_pad_adds_black_bars():
    tall = torch.zeros(1, 3, 360, 160)
    tall[..., 0:40, :] = 1.0  # white band at the top, outside the centred 16:9 window (rows 135..225)
    cropped = fit_frames(tall, (90, 160), FitMode.CROP)
    assert cropped.max() == 0.0
    wide = torch.ones(1, 3, 90, 320)  # 32:9 -> letterboxed to 16:9 with black bars top and bottom
    padded = fit_frames(wide, (90, 160), FitMode.PAD)
    assert padded[..., 0, :].max() < 0.1 and padded[..., 45, :].min() > 0.99
    stretched = fit_frames(wide, (90, 160), FitMode.STRETCH)
    assert stretched.min() > 0.99


def test_display_sizes():
    assert display_size((256, 512)) == (360, 640)
    assert display_size((512, 1024)) == (720, 1280)
    assert display_size((64, 128)) == (64, 128)
    frames = torch.rand(4, 3, 256, 512) * 1.2
    shown = to_display(frames)
    assert shown.shape == (4, 3, 360, 640) and shown.max() <= 1.0
    expected = F.interpolate(frames, size=(360, 640), mode="bilinear", align_corners=False).clamp(0, 1)
    assert torch.equal(shown, expected)
