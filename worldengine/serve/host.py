"""One serving replica: one engine on one device, its live sessions, and admission control (no Ray here).

A replica loads the model once, seeds one base world (the seed image through the autoencoder, or
seeded random latents for a model without one) and serves each live socket as a `LiveSession` restored
from that world: the session's KV cache lives in this replica's memory for exactly as long as its
socket is open, so every message and frame of a session goes to the replica that holds its cache.
The device's `DeviceWorker` steps all due sessions of the replica in one batched forward.

Admission: at most `max_sessions` sessions; one more socket is accepted only to be told
`{"type": "error", "code": "full", ...}` and closed with 1013 (Try Again Later), never served
degraded frames. A session id already open on this replica is refused with code "in_use".
"""
from __future__ import annotations

import asyncio
import logging
import re
import threading
from pathlib import Path

import torch

from worldengine.errors import WaypointError
from worldengine.serve.asgi import CLOSE_TRY_LATER, AsgiSocket
from worldengine.serve.config import AUTO, ServeConfig
from worldengine.serve.socket import ExportQuota, FileActions, Outbox, drive_socket

_LOG = logging.getLogger(__name__)
SESSION_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")   # the ComfyUI route's node id rule


def load_served_engine(config: ServeConfig):
    """(engine, folder, note) for the config's model on this replica's device (auto: its GPU, else CPU)."""
    from worldengine.engine import load_engine
    from worldengine.hub import resolve_model

    models_dir = Path(config.models_dir or Path.home() / ".cache" / "waypoint-models").expanduser()
    folder, note = resolve_model(config.model, models_dir)
    device = config.device
    if device == AUTO:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    engine = load_engine(folder, device=device, dtype=config.dtype, quant=config.quant, compile=config.compile)
    return engine, folder, note


def seed_world(engine, folder: Path, config: ServeConfig):
    """(base snapshot, seed latents [N, C, h, w] float32) every session starts from."""
    if engine.config.has_prompt:
        raise WaypointError(f"serving {engine.config.model_type} needs a prompt, which live serving does not "
                            "take yet; serve a Waypoint-1.5 model")
    session = engine.new_session()
    ae = engine.autoencoder
    if ae is not None:
        from worldengine.cli.rollout import seed_frames_from_file
        image = config.seed_image or (folder / "seed.png" if (folder / "seed.png").is_file() else None)
        latents = ae.codec().encode(ae.seed_frames(seed_frames_from_file(image, ae.pixel_size)), config.fit)
    else:   # a model without its autoencoder: a seeded random start (previews show latents)
        generator = torch.Generator().manual_seed(config.seed)
        latents = torch.randn(1, *engine.config.latent_shape, generator=generator)
    session.append_latents(latents)
    return session.snapshot(), latents


def renderer_factory(engine, seed_latents):
    """preview name -> a new renderer at the base world (a decoder stream is primed with the seed latents)."""
    from worldengine.live.frames import DecoderPreview, LatentPreview

    def make(preview: str):
        if preview == "decoded" and engine.autoencoder is not None:
            decoder = engine.autoencoder.decoder()
            for latent in seed_latents:
                decoder.decode(latent.to(engine.device))
            return DecoderPreview(decoder, engine.autoencoder.frames_per_latent)
        return LatentPreview(engine.config.latent_shape[0])

    return make


class ReplicaHost:
    """The sessions of one replica. `name` identifies the replica in every status event."""

    def __init__(self, config: ServeConfig, name: str = "local"):
        self.config, self.name = config, name
        self.engine, folder, self.note = load_served_engine(config)
        if self.note:
            _LOG.warning("[worldengine] %s", self.note)
        self.base, seed_latents = seed_world(self.engine, folder, config)
        self.renderers = renderer_factory(self.engine, seed_latents)
        self.preview = config.preview
        if self.preview == AUTO:   # the decoder on accelerators, the false-colour latent on CPU
            cpu = self.engine.device.type == "cpu"
            self.preview = "latent" if cpu or self.engine.autoencoder is None else "decoded"
        self._lock = threading.Lock()
        self._sessions: dict[str, object] = {}   # session id -> LiveSession (None while opening)
        self._quotas: dict[str, ExportQuota] = {}
        self.served = self.refused = 0

    # ---- admission ---------------------------------------------------------------------------
    def claim(self, session_id: str) -> dict | None:
        """Reserve a slot for `session_id`: None when admitted, else the error event to answer."""
        if not SESSION_ID.match(session_id):
            return {"type": "error", "code": "bad_id", "message": f"bad session id {session_id[:80]!r}: "
                    "1 to 64 of A-Z a-z 0-9 _ . : -"}
        with self._lock:
            if session_id in self._sessions:
                self.refused += 1
                return {"type": "error", "code": "in_use", "message": f"session {session_id} is already "
                        f"open on replica {self.name}; close it first or pick another id"}
            if len(self._sessions) >= self.config.max_sessions:
                self.refused += 1
                return {"type": "error", "code": "full", "replica": self.name, "sessions": len(self._sessions),
                        "max_sessions": self.config.max_sessions,
                        "message": f"server full: {len(self._sessions)} of {self.config.max_sessions} live "
                                   "sessions in use on the least busy replica; try again later"}
            self._sessions[session_id] = None
            self.served += 1
        return None

    def release(self, session_id: str) -> None:
        with self._lock:
            live = self._sessions.pop(session_id, None)
        if live is not None:
            live.close()

    def stats(self) -> dict:
        with self._lock:
            sessions = len(self._sessions)
        return {"replica": self.name, "sessions": sessions, "max_sessions": self.config.max_sessions,
                "served": self.served, "refused": self.refused, "device": str(self.engine.device),
                "model": self.engine.describe(), "note": self.note}

    def close_all(self) -> None:
        """Close every session (replica shutdown); their sockets see the session closed and end."""
        with self._lock:
            lives = [live for live in self._sessions.values() if live is not None]
        for live in lives:
            live.close()

    # ---- one socket --------------------------------------------------------------------------
    def _open(self, session_id: str, outbox: Outbox):
        from worldengine.live.session import LiveSession, LiveSettings

        live = LiveSession(self.engine, self.base, self.config.seed, self.renderers, outbox.put, outbox.put,
                           settings=LiveSettings(preview=self.preview))
        with self._lock:
            self._sessions[session_id] = live
        return live

    async def serve(self, websocket, session_id: str) -> None:
        """Serve one accepted ASGI websocket (`starlette.websockets.WebSocket`) as session `session_id`."""
        await websocket.accept()
        ws = AsgiSocket(websocket)
        refusal = self.claim(session_id)
        if refusal is not None:
            await ws.send_json(refusal)
            await ws.close(CLOSE_TRY_LATER if refusal["code"] == "full" else 1008, refusal["code"].encode())
            return
        loop = asyncio.get_running_loop()
        try:
            outbox = Outbox(loop)
            live = await loop.run_in_executor(None, self._open, session_id, outbox)   # restore: off the loop
            extra = {"replica": self.name, "session": session_id}
            await drive_socket(ws, live, outbox, self._files(session_id),
                               lambda: {**extra, "replica_sessions": len(self._sessions)})
        except WaypointError as err:
            if not ws.closed:
                await ws.send_json({"type": "error", "code": "open_failed", "message": f"could not open: {err}"})
        finally:
            await loop.run_in_executor(None, self.release, session_id)   # waits for a step in progress
            await ws.close()

    def _files(self, session_id: str) -> FileActions:
        folder = Path(self.config.output_dir).expanduser() / self.name
        with self._lock:
            quota = self._quotas.setdefault(session_id, ExportQuota())

        def target(kind: str, suffix: str) -> Path:
            folder.mkdir(parents=True, exist_ok=True)
            count = sum(1 for _ in folder.glob(f"{session_id}_{kind}_*"))
            return folder / f"{session_id}_{kind}_{count:05d}{suffix}"

        def save_snapshot(live) -> str:
            path = target("snapshot", ".safetensors")
            quota.claim("snapshot", folder)
            live.save_snapshot(path)
            quota.add(path)
            return path.name

        def export_clip(live, seconds: float, fmt: str) -> str:
            path = target("clip", f".{fmt}")
            quota.claim("clip", folder)
            written = Path(live.export_clip(path, seconds))
            quota.add(written)
            return written.name

        return FileActions(save_snapshot, export_clip)
