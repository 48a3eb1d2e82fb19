"""Node contract: declared inputs/outputs, tooltips, errors, engine registry reuse, world handles
that survive ComfyUI's by-reference output cache (re-runs, branches, two worlds on one engine),
decoding, snapshots and interrupts. Runs the node classes directly, without ComfyUI."""
from __future__ import annotations

import gc
import importlib.util
import json
import subprocess
import sys
import weakref

import pytest
import torch

from nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, host, registry, world_nodes
from worldengine.errors import WaypointError

CORE_IDS = {"WaypointLoad", "WaypointSeedFrame", "WaypointControllerInput", "WaypointStepWorld",
            "WaypointDecodeLatent", "WaypointSaveWorldSnapshot", "WaypointLoadWorldSnapshot",
            "WaypointSetWorldPrompt"}
SOCKET_TYPES = {"WAYPOINT_ENGINE", "WAYPOINT_WORLD", "WAYPOINT_CONTROLS", "WAYPOINT_LATENTS", "IMAGE"}


def node(node_id):
    return NODE_CLASS_MAPPINGS[node_id]()


@pytest.fixture()
def models(tiny_models_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("WAYPOINT_MODELS_DIR", str(tiny_models_dir / "waypoint"))
    monkeypatch.chdir(tmp_path)   # outside ComfyUI, snapshots go to ./output
    registry.clear()
    yield tiny_models_dir / "waypoint"
    registry.clear()


def load(name="small-wp15", **options):
    return node("WaypointLoad").load(name, options.get("device", "cpu"), options.get("dtype", "float32"),
                                     options.get("quant", "none"), options.get("compile", False))[0]


def seed_image(seed=0, height=72, width=128):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(1, height, width, 3, generator=generator)


def controls(keys="W", dx=0.0, repeat=1, track=""):
    return node("WaypointControllerInput").build(keys, dx, 0.0, 0, repeat, track)[0]


def seeded_world(engine, seed=0):
    return node("WaypointSeedFrame").seed(engine, seed_image(seed), "crop")[0]


def step(world, ctrl, frames=3, seed=0):
    return node("WaypointStepWorld").step(world, ctrl, frames, seed)


# ---- declarations --------------------------------------------------------------------------------

def test_every_node_declares_the_v1_contract_with_tooltips():
    assert CORE_IDS <= set(NODE_CLASS_MAPPINGS)
    for node_id, cls in NODE_CLASS_MAPPINGS.items():
        assert node_id.startswith("Waypoint") and NODE_DISPLAY_NAME_MAPPINGS.get(node_id), node_id
        if node_id not in CORE_IDS:
            continue
        assert cls.CATEGORY == "Waypoint" and callable(getattr(cls, cls.FUNCTION))
        assert isinstance(cls.RETURN_TYPES, tuple) and len(cls.RETURN_NAMES) == len(cls.RETURN_TYPES)
        spec = cls.INPUT_TYPES()
        assert set(spec) <= {"required", "optional", "hidden"} and spec["required"]
        for group in ("required", "optional"):
            for name, (kind, *options) in spec.get(group, {}).items():
                assert options and options[0].get("tooltip"), f"{node_id}.{name} has no tooltip"
                assert isinstance(kind, list) or kind in SOCKET_TYPES | {"INT", "FLOAT", "STRING", "BOOLEAN"}


def test_step_world_reruns_on_every_queue():
    changed = NODE_CLASS_MAPPINGS["WaypointStepWorld"].IS_CHANGED(world=None, controls=None, frames=1, seed=0)
    assert changed != changed   # NaN: never equal, so ComfyUI never serves it from cache


def test_model_choices_list_local_folders_and_known_repo_ids(models):
    choices = NODE_CLASS_MAPPINGS["WaypointLoad"].INPUT_TYPES()["required"]["model"][0]
    assert {"tiny-wp15", "small-wp15", "tiny-wp1"} <= set(choices)
    assert choices[0] == "Overworld/Waypoint-1.5-1B-360P"
    import shutil
    shutil.copytree(models / "small-wp15", models / "Overworld--Waypoint-1.5-1B-360P")
    try:   # a downloaded repo is listed by its repo id only, and loads from the local folder
        choices = NODE_CLASS_MAPPINGS["WaypointLoad"].INPUT_TYPES()["required"]["model"][0]
        assert "Overworld--Waypoint-1.5-1B-360P" not in choices
        assert load("Overworld/Waypoint-1.5-1B-360P").config.latent_shape == (32, 4, 8)
    finally:
        registry.clear()
        shutil.rmtree(models / "Overworld--Waypoint-1.5-1B-360P")


def test_pack_imports_fast_without_torch_or_global_settings(repo_root):
    """Import the pack the way ComfyUI does; heavy modules must stay unimported, and with torch
    already loaded (as in ComfyUI) no global torch setting may change."""
    script = f"""
import importlib.util, json, sys, time
import torch
def settings():
    return [torch.get_num_threads(), str(torch.get_default_dtype()), torch.is_grad_enabled(),
            torch.are_deterministic_algorithms_enabled(), torch.get_float32_matmul_precision(),
            torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32]
before = settings()
heavy_before = {{m for m in ("worldengine.model", "safetensors.torch", "huggingface_hub") if m in sys.modules}}
start = time.perf_counter()
spec = importlib.util.spec_from_file_location("comfyui_waypoint", {str(repo_root / "__init__.py")!r})
pack = importlib.util.module_from_spec(spec)
sys.modules["comfyui_waypoint"] = pack
spec.loader.exec_module(pack)
seconds = time.perf_counter() - start
heavy = [m for m in ("worldengine.model", "safetensors.torch", "huggingface_hub") if m in sys.modules]
print(json.dumps({{"seconds": seconds, "same": before == settings(), "heavy": heavy,
                  "nodes": sorted(pack.NODE_CLASS_MAPPINGS), "web": pack.WEB_DIRECTORY}}))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"pack import took {report['seconds'] * 1000:.1f} ms (torch preloaded)")
    assert report["same"] and report["heavy"] == [] and report["web"] == "./web"
    assert CORE_IDS <= set(report["nodes"])


def test_pack_does_not_import_torch_by_itself(repo_root):
    script = (f"import importlib.util, sys\n"
              f"spec = importlib.util.spec_from_file_location('wp_pack', {str(repo_root / '__init__.py')!r})\n"
              "m = importlib.util.module_from_spec(spec); sys.modules['wp_pack'] = m; spec.loader.exec_module(m)\n"
              "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


# ---- controller input ----------------------------------------------------------------------------

def test_controller_input_builds_concatenates_and_validates():
    first = controls("W, Shift", dx=0.25, repeat=2)
    assert len(first) == 2 and first.frames[0].buttons == {87, 16} and first.frames[0].mouse == (0.25, 0.0)
    track = json.dumps({"format": "waypoint-control-track/1", "seed": 7,
                        "frames": [{"keys": ["A"]}, {"buttons": [68], "scroll": 1}]})
    both = node("WaypointControllerInput").build("Space", 0.0, 0.0, 0, 1, track, first)[0]
    assert [sorted(c.buttons) for c in both.frames] == [[16, 87], [16, 87], [65], [68], [32]]
    assert both.seed == 0   # the first recorded seed (upstream's) wins
    assert node("WaypointControllerInput").build("", 0, 0, 0, 0, track)[0].seed == 7
    with pytest.raises(WaypointError, match="unknown key name 'Jump'"):
        controls("W, Jump")
    with pytest.raises(WaypointError, match="not valid JSON"):
        controls(track="{frames: oops")
    with pytest.raises(WaypointError, match="frame 1"):
        controls(track='[{"keys": ["W"]}, {"scroll": 5}]')
    with pytest.raises(WaypointError, match="no frames"):
        node("WaypointControllerInput").build("W", 0, 0, 0, 0, "")


# ---- registry ------------------------------------------------------------------------------------

def test_registry_reuses_engines_and_releases_unreferenced_ones(models):
    loads = registry.load_count()
    engine = load()
    assert load() is engine and registry.load_count() == loads + 1   # second load is a lookup
    other = load(dtype="bfloat16")
    assert other is not engine and other.dtype == torch.bfloat16 and registry.load_count() == loads + 2
    released = weakref.ref(other)
    assert load() is engine                       # the pin moves back to the first engine
    del other
    gc.collect()
    assert released() is None                     # nothing references the bf16 engine: freed
    assert [k.dtype for k in registry.loaded_keys()] == ["float32"]


def test_load_errors_name_the_problem(models):
    with pytest.raises(WaypointError, match="neither a folder nor a Hugging Face repo id"):
        node("WaypointLoad").load("tiny-wp15", "cpu", "float32", "none", False, repo_id="not a model")
    with pytest.raises(WaypointError, match="fp8.*compute capability"):
        node("WaypointLoad").load("tiny-wp15", "cpu", "float32", "fp8", False)
    assert load() is not None                     # the refused option left the registry usable
    engine = load("no-ae-wp15")
    with pytest.raises(WaypointError, match="taehv1_5.safetensors"):
        node("WaypointSeedFrame").seed(engine, seed_image(), "crop")


# ---- worlds --------------------------------------------------------------------------------------

def test_rerun_and_branches_do_not_disturb_the_cached_input_world(models):
    engine = load()
    world = seeded_world(engine)
    straight, latents_a = step(world, controls("W"), frames=3, seed=1)
    other, latents_b = step(world, controls("S", dx=0.5), frames=3, seed=1)   # branch from the same world
    again, latents_c = step(world, controls("W"), frames=3, seed=1)           # ComfyUI re-run
    assert torch.equal(latents_a.latents, latents_c.latents)
    assert not torch.allclose(latents_a.latents, latents_b.latents)
    assert world.frame_index == 1 and straight.frame_index == 4 and other.frame_index == 4
    # continuing an older branch after another one ran gives what a straight run gives
    _, continued = step(straight, controls("W"), frames=2, seed=2)
    _, continued_again = step(again, controls("W"), frames=2, seed=2)
    assert torch.equal(continued.latents, continued_again.latents)


def test_two_worlds_on_one_engine_are_independent(models):
    engine = load()
    world_a, world_b = seeded_world(engine, seed=0), seeded_world(engine, seed=1)

    def run(world, keys, interleave=None):
        out = []
        for frame in range(3):
            world, latents = step(world, controls(keys), frames=1, seed=frame)
            out.append(latents.latents)
            if interleave is not None:
                interleave()
        return torch.cat(out)

    alone_a, alone_b = run(world_a, "W"), run(world_b, "D")
    b_state = {"world": world_b, "latents": []}

    def step_b():
        b_state["world"], latents = step(b_state["world"], controls("D"), frames=1, seed=len(b_state["latents"]))
        b_state["latents"].append(latents.latents)

    assert torch.equal(run(world_a, "W", interleave=step_b), alone_a)
    assert torch.equal(torch.cat(b_state["latents"]), alone_b)
    assert not torch.allclose(alone_a, alone_b)


def test_controls_track_length_and_seed_rules(models):
    engine = load()
    world = seeded_world(engine)
    track = json.dumps({"format": "waypoint-control-track/1", "seed": 42,
                        "frames": [{"keys": ["W"]}, {"keys": ["A"]}]})
    from_track = node("WaypointControllerInput").build("", 0, 0, 0, 0, track)[0]
    _, by_length = step(world, from_track, frames=0, seed=-1)        # 0 = track length, -1 = track seed
    _, explicit = step(world, from_track, frames=2, seed=42)
    assert len(by_length) == 2 and torch.equal(by_length.latents, explicit.latents)
    _, held = step(world, from_track, frames=4, seed=42)              # short track holds its last frame
    assert torch.equal(held.latents[:2], explicit.latents)


def test_seed_frame_injects_without_touching_the_input_world(models):
    engine = load()
    world = seeded_world(engine)
    rolled, _ = step(world, controls(), frames=2)
    injected, seed_latents = node("WaypointSeedFrame").seed(engine, seed_image(3).repeat(4, 1, 1, 1), "crop", rolled)
    assert len(seed_latents) == 1 and injected.frame_index == rolled.frame_index + 1
    _, after_rolled = step(rolled, controls(), frames=1)
    _, after_fresh = step(step(world, controls(), frames=2)[0], controls(), frames=1)
    assert torch.equal(after_rolled.latents, after_fresh.latents)
    other_engine = load(dtype="bfloat16")
    with pytest.raises(WaypointError, match="different engine"):
        node("WaypointSeedFrame").seed(other_engine, seed_image(), "crop", world)


def test_seed_frame_fit_modes(models):
    engine = load()
    square = seed_image(height=100, width=100)
    with pytest.raises(WaypointError, match="fit mode"):
        node("WaypointSeedFrame").seed(engine, square, "error")
    for fit in ("crop", "stretch", "pad"):
        assert node("WaypointSeedFrame").seed(engine, square, fit)[0].frame_index == 1
    with pytest.raises(WaypointError, match=r"\[B, H, W, 3\]"):
        node("WaypointSeedFrame").seed(engine, torch.rand(1, 72, 128, 4), "crop")


def test_interrupt_between_frames_leaves_the_world_reusable(models, monkeypatch):
    engine = load()
    world = seeded_world(engine)
    _, expected = step(world, controls(), frames=3)
    calls = {"n": 0}

    class Interrupted(Exception):
        pass

    def interrupt_on_third():
        calls["n"] += 1
        if calls["n"] == 3:
            raise Interrupted()

    monkeypatch.setattr(host, "check_interrupt", interrupt_on_third)
    with pytest.raises(Interrupted):
        step(world, controls(), frames=3)
    monkeypatch.undo()
    _, again = step(world, controls(), frames=3)
    assert torch.equal(again.latents, expected.latents)


# ---- decoding ------------------------------------------------------------------------------------

def test_decode_gives_four_frames_per_latent_at_display_size(models):
    engine = load("tiny-wp15")
    world, seed_latents = node("WaypointSeedFrame").seed(engine, seed_image(height=360, width=640), "error")
    _, latents = step(world, controls(), frames=1)
    (images,) = node("WaypointDecodeLatent").decode(latents)
    assert images.shape == (4, 360, 640, 3) and images.dtype == torch.float32
    assert 0.0 <= images.min() and images.max() <= 1.0 and images.std() > 0.01


def test_decode_is_the_same_whatever_was_decoded_before(models):
    engine = load()
    world, seed_latents = node("WaypointSeedFrame").seed(engine, seed_image(), "crop")
    first, latents_1 = step(world, controls(), frames=2, seed=1)
    _, latents_2 = step(first, controls("D"), frames=2, seed=2)
    decode = node("WaypointDecodeLatent").decode
    direct = decode(latents_2)[0]                     # replays seed + rollout 1 behind the scenes
    decode(seed_latents), decode(latents_1)
    assert torch.equal(decode(latents_2)[0], direct)  # now from remembered decoder states
    assert direct.shape == (8, 64, 128, 3)
    # one continuous decoder stream over the whole world gives the same frames
    ae = engine.autoencoder
    stream = ae.decoder()
    stream.decode(seed_latents.latents)
    stream.decode(latents_1.latents)
    continuous = stream.decode(latents_2.latents).permute(0, 2, 3, 1)
    assert torch.allclose(continuous, direct, atol=1e-6)


def test_waypoint1_world_decodes_one_frame_per_latent_and_takes_a_prompt(models, monkeypatch):
    engine = load("tiny-wp1")
    with pytest.raises(WaypointError, match="Set World Prompt"):
        seeded_world(engine)

    class FakeEncoder:   # stands in for UMT5: a deterministic embedding per text
        def encode(self, text):
            generator = torch.Generator().manual_seed(len(text))
            emb = torch.randn(8, engine.config.prompt_embedding_dim, generator=generator)
            return emb, torch.zeros(8, dtype=torch.bool)

    monkeypatch.setattr(world_nodes, "prompt_encoder", lambda source, device: FakeEncoder())
    set_prompt = node("WaypointSetWorldPrompt").set_prompt
    (empty,) = set_prompt("a foggy forest", "tiny", engine=engine)
    world = node("WaypointSeedFrame").seed(engine, seed_image(), "crop", empty)[0]
    (desert,) = set_prompt("a red desert canyon at dusk", "tiny", world=world)
    _, in_forest = step(world, controls(), frames=2)
    _, in_desert = step(desert, controls(), frames=2)
    assert not torch.allclose(in_forest.latents, in_desert.latents)
    assert torch.equal(step(world, controls(), frames=2)[1].latents, in_forest.latents)
    (images,) = node("WaypointDecodeLatent").decode(in_forest)
    assert images.shape == (2, 360, 640, 3)
    with pytest.raises(WaypointError, match="takes no text prompt"):
        set_prompt("hello", "tiny", engine=load())
    with pytest.raises(WaypointError, match="connect a world"):
        set_prompt("hello", "tiny")


# ---- snapshots -----------------------------------------------------------------------------------

def test_snapshot_round_trip_continues_identically(models):
    engine = load()
    world, _ = node("WaypointSeedFrame").seed(engine, seed_image(), "crop")
    middle, first = step(world, controls(), frames=2, seed=1)
    result = node("WaypointSaveWorldSnapshot").save(middle, "tests/branch")
    saved_world, relative = result["result"]
    assert saved_world is middle and relative.endswith(".safetensors") and result["ui"]["text"] == [relative]
    (loaded,) = node("WaypointLoadWorldSnapshot").load(engine, relative)
    assert loaded.frame_index == middle.frame_index
    _, expected = step(middle, controls("A"), frames=2, seed=3)
    _, resumed = step(loaded, controls("A"), frames=2, seed=3)
    assert torch.equal(expected.latents, resumed.latents)
    decode = node("WaypointDecodeLatent").decode
    assert torch.allclose(decode(expected)[0], decode(resumed)[0], atol=1e-6)   # decoder stream saved too
    assert node("WaypointSaveWorldSnapshot").save(middle, "tests/branch")["result"][1] != relative
    with pytest.raises(WaypointError, match="not found"):
        node("WaypointLoadWorldSnapshot").load(engine, "tests/missing.safetensors")
    with pytest.raises(WaypointError, match="outside the output folder"):
        node("WaypointSaveWorldSnapshot").save(middle, "../escape")
    with pytest.raises(WaypointError, match="different model"):
        node("WaypointLoadWorldSnapshot").load(load("tiny-wp15"), relative)


def test_pack_loads_like_comfyui_with_optional_modules_missing(repo_root):
    spec = importlib.util.spec_from_file_location("waypoint_pack_under_test", repo_root / "__init__.py",
                                                  submodule_search_locations=[str(repo_root)])
    pack = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = pack
    try:
        spec.loader.exec_module(pack)
        assert CORE_IDS <= set(pack.NODE_CLASS_MAPPINGS)
        assert set(pack.NODE_DISPLAY_NAME_MAPPINGS) == set(pack.NODE_CLASS_MAPPINGS)
    finally:
        for name in [n for n in sys.modules if n.startswith(spec.name)]:
            del sys.modules[name]


def test_default_model_falls_back_to_the_toy_world_offline(models, monkeypatch):
    from worldengine.hub import TOY_MODEL_DIR

    if not (TOY_MODEL_DIR / "model.safetensors").is_file():
        pytest.skip(f"the toy world is not shipped at {TOY_MODEL_DIR}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    try:
        engine = load("Overworld/Waypoint-1.5-1B-360P")
        assert engine.folder == TOY_MODEL_DIR
        assert load("toyworld (offline demo)") is engine        # also listed and loadable by name
        assert "toyworld (offline demo)" in NODE_CLASS_MAPPINGS["WaypointLoad"].INPUT_TYPES()["required"]["model"][0]
        with pytest.raises(WaypointError, match="nobody/missing"):   # other repo ids still fail loudly
            load("nobody/missing")
    finally:
        registry.clear()
