"""Batched stepping: several sessions of one engine advance one frame together, one forward pass per sigma.

    latents = engine.step_many([(world_a, controls_a, generator_a), (world_b, controls_b, None)])

Each session keeps its own controls, noise (drawn from its own generator, in request order, exactly as
`session.step` draws it), frame counter, ring position, RoPE times and key masks; the weights and the
per-sigma conditioning are shared. Frames equal the unbatched ones up to GEMM rounding (tests/test_batch.py).

Static shapes: a group is padded to the next bucket of BUCKETS (more than the largest bucket run as
several groups), so a compiled forward and its CUDA graphs exist once per bucket and never recompile
as players come and go. Padding rows repeat row 0's inputs; their results are dropped and their K/V
land only in the workspace's own rows.

Workspace: per bucket B, one static-address buffer per layer [2, B, Hk, (buckets+1)*T, dh] (compute
dtype), one [B, (buckets+1)*T] bool mask per ring kind, RoPE tables [B, 1, T, d_head/2] fp32 and the
control embeddings [B, 1, D]. Before a frame each session's rings (frozen during the frame) are
copied into its row; after the cache pass each row's tail goes back to its session, which then
commits it into its own ring, as `session.step` does. The sessions' own buffers stay authoritative
(single steps, snapshots and batched steps mix freely); the price is one ring copy per session-frame
and the workspace memory (about one more KV cache per bucket row; counted by `worldengine.memory`).

Compiled engines: a bucket's first batched call compiles it (tens of seconds). Real-time callers ask
`batch_ready` first: it starts that compile in a background thread and says False until it is done,
so live play steps its players one by one meanwhile. `step_many` is safe from several threads (one
group at a time per bucket).
"""
from __future__ import annotations

import logging
import threading
import weakref

import torch

from worldengine.compile import CUDA_GRAPH_MODE
from worldengine.controls import Controls
from worldengine.errors import WaypointError

BUCKETS = (1, 2, 4, 8)
LOG = logging.getLogger("worldengine")


def bucket_for(count: int) -> int:
    """The smallest bucket holding `count` rows (1 <= count <= BUCKETS[-1])."""
    return next(size for size in BUCKETS if size >= count)


class BatchWorkspace:
    """The static inputs of one bucket size; rows [0, n) hold the group's sessions, the rest padding."""

    def __init__(self, engine, batch: int):
        config, dtype, device = engine.config, engine.dtype, engine.device
        self.batch, self.tokens = batch, config.tokens_per_frame
        self.lock = threading.Lock()   # one group at a time in these rows (callers on several threads)
        rings = [config.ring(i) for i in range(config.n_layers)]
        slots = lambda buckets: (buckets + 1) * self.tokens
        self.kv = [torch.zeros((2, batch, config.n_kv_heads, slots(b), config.d_head), dtype=dtype, device=device)
                   for _, b in rings]
        self.masks = {kind: torch.ones((batch, slots(kind[1])), dtype=torch.bool, device=device)
                      for kind in sorted(set(rings))}
        self.layer_masks = [self.masks[kind] for kind in rings]
        pairs = (batch, 1, self.tokens, config.d_head // 2)
        self.cos = torch.zeros(pairs, dtype=torch.float32, device=device)
        self.sin = torch.zeros(pairs, dtype=torch.float32, device=device)
        self.ctrl = torch.zeros((batch, 1, config.d_model), dtype=dtype, device=device)

    def tensors(self) -> list[torch.Tensor]:
        return [*self.kv, *self.masks.values(), self.cos, self.sin, self.ctrl]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors())

    def load(self, sessions, inputs):
        """Copy each session's rings, masks (already prepared for its frame), RoPE tables and control
        embedding into its row; padding rows get row 0's masks, tables and controls."""
        tokens = self.tokens
        for row in range(self.batch):
            source = row if row < len(sessions) else 0
            session, (ctrl, cos, sin, _) = sessions[source], inputs[source]
            if row < len(sessions):
                for workspace, buffer in zip(self.kv, session.cache.buffers):
                    workspace[:, row, :, :-tokens].copy_(buffer[:, :, :-tokens])
            for kind, mask in self.masks.items():
                mask[row].copy_(session.cache.mask_buffers[kind])
            self.cos[row, 0].copy_(cos)
            self.sin[row, 0].copy_(sin)
            self.ctrl[row].copy_(ctrl)

    def store(self, sessions):
        """Hand each session the K/V its cache pass left in the tail of its row."""
        tokens = self.tokens
        for row, session in enumerate(sessions):
            for workspace, buffer in zip(self.kv, session.cache.buffers):
                buffer[:, :, -tokens:].copy_(workspace[:, row, :, -tokens:])


class BatchStepper:
    """One per engine: its workspaces (made on first use of each bucket) and the batched forward."""

    def __init__(self, engine):
        self.workspaces: dict[int, BatchWorkspace] = {}
        self._lock = threading.Lock()
        self.compiled = bool(engine.options.get("compile"))
        self.warm: dict[int, str] = {}   # compiled engines: bucket -> "compiling" / "ready" / "failed: ..."
        self.cuda_graphs = bool(engine.options.get("compile")) and torch.device(engine.device).type == "cuda"
        self.forward = engine.model.forward_batched
        if engine.options.get("compile"):
            kwargs = {"fullgraph": True, "dynamic": False}
            if self.cuda_graphs:
                kwargs["mode"] = CUDA_GRAPH_MODE
            self.forward = torch.compile(engine.model.forward_batched, **kwargs)

    def workspace(self, engine, batch: int) -> BatchWorkspace:
        with self._lock:
            if batch not in self.workspaces:
                # Ordinary tensors even when the first call runs in inference mode: an engine move
                # (worldengine.memory) swaps their storage in place, which inference tensors refuse.
                with torch.inference_mode(False):
                    workspace = BatchWorkspace(engine, batch)
                if self.cuda_graphs:   # fixed addresses: replays never re-record for new sessions
                    for tensor in workspace.tensors():
                        torch._dynamo.mark_static_address(tensor, guard=False)
                self.workspaces[batch] = workspace
            return self.workspaces[batch]

    def ready(self, engine, count: int, prompt: torch.Tensor | None = None) -> bool:
        """Whether `count` sessions step batched now without waiting for a compile: always for an eager
        engine; for a compiled one once their bucket's graph is built, which the first ask starts in a
        background thread (a real-time caller steps them one by one meanwhile). `prompt`: a session's
        prompt context for the warm-up (prompt-conditioned models)."""
        if not self.compiled:
            return True
        bucket = bucket_for(min(count, BUCKETS[-1]))
        with self._lock:
            if bucket not in self.warm:
                self.warm[bucket] = "compiling"
                threading.Thread(target=self._warm_up, args=(engine, bucket, prompt), daemon=True,
                                 name=f"waypoint-batch-compile-{bucket}").start()
            return self.warm[bucket] == "ready"

    def _warm_up(self, engine, bucket: int, prompt) -> None:
        """Compile (and capture) bucket `bucket` on its own workspace rows: zeros in, results dropped;
        the K/V it writes land in the rows' tails, which every group's passes rewrite before use."""
        try:
            workspace = self.workspace(engine, bucket)
            shape = (bucket, *engine.config.latent_shape)
            prompts = [prompt] * bucket if engine.config.has_prompt else None
            with workspace.lock, torch.inference_mode():
                x = torch.zeros(shape, dtype=engine.dtype, device=engine.device)
                for _ in range(2):   # the second call replays what the first built
                    self.run(engine, x, 0, workspace, prompts)
            self.warm[bucket] = "ready"
        except Exception as err:  # noqa: BLE001 - this bucket then steps one by one, the engine goes on
            self.warm[bucket] = f"failed: {type(err).__name__}: {err}"
            LOG.warning("[worldengine] batched compile of bucket %d failed: %s", bucket, self.warm[bucket])

    def nbytes(self) -> int:
        return sum(workspace.nbytes() for workspace in self.workspaces.values())

    def run(self, engine, x, sigma_index, workspace, prompts):
        cond = engine.sigma_conditioning[sigma_index]
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        velocity = self.forward(x, cond.block_mods, cond.out_mod, workspace.cos, workspace.sin, workspace.kv,
                                workspace.layer_masks, workspace.ctrl, prompts)
        return velocity.clone() if self.cuda_graphs else velocity

    @torch.inference_mode()
    def step_group(self, engine, requests) -> list[torch.Tensor]:
        """One frame for up to BUCKETS[-1] distinct sessions: the Euler denoise passes, then the cache pass."""
        sessions = [session for session, _, _ in requests]
        # Every check (controls, prompt) runs before any state changes or any generator advances.
        # The session's own input helpers are used so the inputs are exactly those of session.step.
        inputs = [session.frame_inputs(controls) for session, controls, _ in requests]
        noise = [session.frame_noise(generator=generator) for session, _, generator in requests]
        workspace = self.workspace(engine, bucket_for(len(requests)))
        with workspace.lock:
            return self._step_rows(engine, requests, sessions, inputs, noise, workspace)

    def _step_rows(self, engine, requests, sessions, inputs, noise, workspace) -> list[torch.Tensor]:
        workspace.load(sessions, inputs)
        pad = workspace.batch - len(requests)
        x = torch.stack(noise + noise[:1] * pad)
        prompts = None
        if engine.config.has_prompt:
            prompts = [session.prompt_context for session in sessions] + [sessions[0].prompt_context] * pad
        for index, step in enumerate(engine.sigma_steps):
            velocity = self.run(engine, x, index, workspace, prompts)
            x = (x.float() + step.float() * velocity.float()).to(engine.dtype)
        self.run(engine, x, len(engine.sigmas) - 1, workspace, prompts)   # cache pass: same inputs
        workspace.store(sessions)
        latents = x[: len(requests)].float().cpu().clone()
        for session, latent in zip(sessions, latents):   # what session.step does after its cache pass
            session.end_frame(latent)
        return list(latents)


_STEPPERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_STEPPERS_LOCK = threading.Lock()


def stepper_for(engine) -> BatchStepper:
    """The engine's BatchStepper (its workspaces live as long as the engine)."""
    with _STEPPERS_LOCK:
        if engine not in _STEPPERS:
            _STEPPERS[engine] = BatchStepper(engine)
        return _STEPPERS[engine]


def batch_ready(engine, count: int, prompt: torch.Tensor | None = None) -> bool:
    """Whether `count` sessions of `engine` can step batched now without waiting for a compile
    (`BatchStepper.ready`; a compiled engine's first ask starts that bucket's compile in the background)."""
    return stepper_for(engine).ready(engine, count, prompt)


def workspace_tensors(engine) -> list[torch.Tensor]:
    """Every tensor of the engine's batch workspaces made so far (none before the first batched step):
    what memory estimates count and an engine move carries along."""
    stepper = _STEPPERS.get(engine)
    return [] if stepper is None else [t for w in stepper.workspaces.values() for t in w.tensors()]


def step_many(engine, requests) -> list[torch.Tensor]:
    """Advance each (session, controls, generator) one frame; returns the latents [C, H, W] float32 CPU
    in request order. controls: a Controls or None; generator: a torch.Generator or None (global RNG)."""
    requests = [_check_request(engine, index, request) for index, request in enumerate(requests)]
    seen = set()
    for index, (session, _, _) in enumerate(requests):
        if id(session) in seen:
            raise WaypointError(f"step_many: request {index} repeats a session (one frame per session per call)")
        seen.add(id(session))
    stepper, size = stepper_for(engine), BUCKETS[-1]
    latents = []
    for start in range(0, len(requests), size):
        latents += stepper.step_group(engine, requests[start:start + size])
    return latents


def _check_request(engine, index: int, request):
    if not isinstance(request, (tuple, list)) or len(request) not in (2, 3):
        raise WaypointError(f"step_many: request {index} must be (session, controls, generator), got {request!r}")
    session, controls, generator = (*request, None)[:3]
    if getattr(session, "engine", None) is not engine:
        raise WaypointError(f"step_many: request {index}'s session does not belong to this engine")
    if controls is not None and not isinstance(controls, Controls):
        raise WaypointError(f"step_many: request {index}'s controls must be a Controls or None, "
                            f"got {type(controls).__name__}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise WaypointError(f"step_many: request {index}'s generator must be a torch.Generator or None, "
                            f"got {type(generator).__name__}")
    return session, controls, generator
