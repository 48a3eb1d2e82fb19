"""Bounded world memory at the World level: handles share state, snapshots are lazy and budgeted,
replayed states are bit-identical, and the memory figures of worldengine.memory are the real ones."""
from __future__ import annotations

import gc

import pytest
import torch

from nodes import world_state
from nodes.controls_node import WaypointControllerInput
from nodes.core import WaypointStepWorld
from nodes.world import new_world
from worldengine.errors import WaypointError
from worldengine.memory import MIB, kv_session_bytes, model_memory, module_bytes, snapshot_bytes, tensors_bytes

# Few layers, a long window and few tokens: a 100 MiB KV snapshot whose frames still step fast.
BIG_KV = {"n_layers": 2, "d_model": 256, "n_heads": 2, "n_kv_heads": 2, "channels": 8, "height": 2, "width": 4,
          "tokens_per_frame": 8, "local_window": 3200, "global_window": 25600, "global_pinned_dilation": 8,
          "global_attn_period": 2}


@pytest.fixture(scope="module")
def big_engine(tmp_path_factory):
    from worldengine.engine import load_engine
    from worldengine.synthetic import tiny_config_dict, write_checkpoint

    folder = write_checkpoint(tmp_path_factory.mktemp("bigkv") / "big-kv", tiny_config_dict(**BIG_KV))
    return load_engine(folder, dtype=torch.float32, quant="none", compile="off")   # the float engine, measured


@pytest.fixture(autouse=True)
def fresh_store():
    world_state.store.clear()
    previous = world_state.set_budget(world_state.DEFAULT_BUDGET_MB * MIB)
    yield
    world_state.set_budget(previous)
    world_state.store.clear()


def controls(keys="W"):
    return WaypointControllerInput().build(keys, 0.0, 0.0, 0, 1, "")[0]


def seeded(engine, seed=0):
    latents = torch.randn(1, *engine.config.latent_shape, generator=torch.Generator().manual_seed(seed))
    base = new_world(engine)
    with base.advance() as session:
        session.append_latents(latents)
        return base.derive(new_latents=latents)


def step(world, frames=1, seed=0, keys="W"):
    return WaypointStepWorld().step(world, controls(keys), frames, seed)


def held_snapshot_bytes(handles) -> int:
    """Bytes of every snapshot reachable from `handles` (their states and the ancestors they replay from)."""
    tensors, seen = [], set()
    for world in handles:
        node = world.node
        while node is not None and id(node) not in seen:
            seen.add(id(node))
            if node.snapshot is not None:
                tensors += list(node.snapshot.tensors.values())
            node = node.parent
    return tensors_bytes(tensors)


def run_chain(seed_world, cache: dict, peaks: list):
    """Five chained Step World nodes the way ComfyUI runs them: each output replaces the node's cached
    output from the previous queue (which dies then), and every node re-runs."""
    world = seed_world
    for index in range(5):
        world, latents = step(world, frames=1, seed=index)
        cache[f"step{index}"] = (world, latents)
        peaks.append(held_snapshot_bytes([seed_world] + [out[0] for out in cache.values()]))
    return [cache[f"step{i}"][1].latents.clone() for i in range(5)]


def test_five_chained_steps_hold_at_most_two_kv_copies(big_engine):
    seed_world, cache, peaks = seeded(big_engine), {}, []
    snapshot = tensors_bytes(seed_world.snapshot.tensors.values())   # one full copy, measured
    assert snapshot >= 100 * MIB
    first = run_chain(seed_world, cache, peaks)
    assert max(peaks) == 0, "a straight chain needs no snapshot: every state is the live one or replayable"
    second = run_chain(seed_world, cache, peaks)      # re-queue: starts again from the cached seed world
    gc.collect()
    copies = max(peaks) / snapshot + 1       # + the live session's cache, itself one full copy
    print(f"KV snapshot {snapshot / MIB:.1f} MiB; most held at once by handles {max(peaks) / MIB:.1f} MiB; "
          f"with the live session's {kv_session_bytes(big_engine.config, big_engine.dtype) / MIB:.1f} MiB: "
          f"{copies:.2f} full copies")
    assert copies <= 2.0
    assert all(torch.equal(a, b) for a, b in zip(first, second)), "a re-queue gives other frames"


def reference_snapshot(engine, seed_world, seeds, frames):
    """The state after stepping `seeds` on a fresh session directly (no handles, no replay)."""
    session = engine.new_session()
    session.append_latents(seed_world.decode_tail.latents)
    for seed in seeds:
        generator = torch.Generator().manual_seed(seed)
        for _ in range(frames):
            session.step(controls().frames[0], generator=generator)
    return session.snapshot()


def test_branch_from_an_overwritten_state_is_rebuilt_bit_for_bit(big_engine):
    seed_world = seeded(big_engine)
    w1, _ = step(seed_world, frames=2, seed=1)
    w2, l2 = step(w1, frames=2, seed=2)
    step(w2, frames=1, seed=3)                       # moves the session on past w1 and w2
    branch, branch_latents = step(w1, frames=2, seed=2)   # w1 is rebuilt by replay
    assert torch.equal(branch_latents.latents, l2.latents)
    reference = reference_snapshot(big_engine, seed_world, [1, 2], 2)
    got = branch.snapshot
    assert got.frame_index == reference.frame_index == 5
    assert set(got.tensors) == set(reference.tensors)
    assert all(torch.equal(got.tensors[k], reference.tensors[k]) for k in reference.tensors)


def test_zero_budget_still_branches_exactly_and_keeps_nothing(big_engine):
    world_state.set_budget(0)
    seed_world = seeded(big_engine)
    w1, _ = step(seed_world, frames=1, seed=1)
    a, la = step(w1, frames=2, seed=5, keys="A")
    b, lb = step(w1, frames=2, seed=6, keys="D")
    a2, la2 = step(w1, frames=2, seed=5, keys="A")   # re-run of branch a after b moved the session
    assert torch.equal(la.latents, la2.latents) and not torch.equal(la.latents, lb.latents)
    assert world_state.store.used() == 0 and held_snapshot_bytes([seed_world, w1, a, b, a2]) == 0


def test_a_kept_snapshot_is_evicted_for_a_newer_one_within_the_budget(big_engine):
    world_state.set_budget(snapshot_bytes(big_engine.config, big_engine.dtype))   # room for one
    seed_world = seeded(big_engine)
    w1, _ = step(seed_world, frames=1, seed=1)
    step(w1, frames=1, seed=2)
    step(w1, frames=1, seed=3)        # w1 revisited: kept, the branch it left is needed too
    step(seed_world, frames=1, seed=4)
    assert world_state.store.kept() <= 1 and world_state.store.used() <= world_state.store.budget


def test_a_loaded_world_over_budget_is_a_clear_error_and_the_session_stays_usable(big_engine, tmp_path):
    world = seeded(big_engine)
    path = tmp_path / "w.safetensors"
    with world.advance() as session:
        session.save_snapshot(path)
    world_state.set_budget(10 * MIB)
    empty = new_world(big_engine)
    with pytest.raises(WaypointError, match=f"budget.*{world_state.BUDGET_ENV}"):
        with empty.advance() as session:
            session.load_snapshot(path)      # an opaque change: its state must be kept, and does not fit
            empty.derive()
    after, latents = step(world, frames=1, seed=0)
    assert after.frame_index == 2 and torch.isfinite(latents.latents).all()


def test_budget_comes_from_the_environment_and_bad_values_name_the_variable(monkeypatch):
    monkeypatch.setenv(world_state.BUDGET_ENV, "512")
    assert world_state.SnapshotStore().budget == 512 * MIB
    monkeypatch.setenv(world_state.BUDGET_ENV, "lots")
    with pytest.raises(WaypointError, match=world_state.BUDGET_ENV):
        world_state.SnapshotStore().budget


def test_memory_figures_match_a_loaded_engine(big_engine):
    figures = model_memory(big_engine.config, big_engine.dtype)
    assert figures.weights == module_bytes(big_engine.model)
    session = big_engine.new_session()
    assert figures.kv_per_session == tensors_bytes([*session.cache.buffers, *session.cache.mask_buffers.values()])
    session.append_latent(torch.zeros(big_engine.config.latent_shape))
    snap = session.snapshot()
    flags = sum(t.nbytes for k, t in snap.tensors.items() if k.startswith("written."))
    assert figures.snapshot == tensors_bytes(snap.tensors.values()) - flags


def test_docs_memory_table_is_the_generated_one(repo_root):
    from worldengine.memory import markdown_table
    assert markdown_table() in (repo_root / "docs" / "memory.md").read_text()


def test_int8_weight_figure_matches_a_quantized_engine(tiny_models_dir):
    from worldengine.engine import load_engine
    from worldengine.memory import weight_bytes
    engine = load_engine(tiny_models_dir / "waypoint" / "tiny-wp15", dtype=torch.float32, quant="int8", compile=False)
    assert weight_bytes(engine.config, engine.dtype, "int8") == module_bytes(engine.model)
    assert weight_bytes(engine.config, engine.dtype, "int8") < weight_bytes(engine.config, engine.dtype, "none")
