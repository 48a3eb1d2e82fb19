"""The nodes' only contact with the autoencoder (`engine.autoencoder`, `worldengine.ae`).

A world's encoder and decoder streams are causal over the world (TAEHV 1.5: memory persists across
calls); per-frame autoencoders (Waypoint-1, the toy world) have streams with no memory. Both expose
`encode`/`decode`, `get_state`/`load_state`. Nodes keep them on `World` handles and `DecodeLink`s.
"""
from __future__ import annotations


def autoencoder(engine):
    """The engine's autoencoder, or a WaypointError saying which files are missing."""
    from worldengine.errors import WaypointError
    ae = engine.autoencoder
    if ae is None:
        folder = getattr(engine, "folder", None)
        raise WaypointError(f"model folder {folder} has no autoencoder files, so images cannot be encoded "
                            "or decoded: add taehv1_5.safetensors (Waypoint-1.5) or the Waypoint-1 AE "
                            "files (encoder/decoder .safetensors + _conf.yml) to the folder")
    return ae


def new_decoder(engine):
    """A fresh decoder stream whose frames come out at the model's display size."""
    return autoencoder(engine).decoder()


def new_encoder(engine):
    return autoencoder(engine).encoder()


def copy_decoder(decoder):
    """An independent decoder stream in the same state (get_state clones the memory)."""
    if decoder is None:
        return None
    twin = decoder.ae.decoder(decoder.display)
    twin.load_state(decoder.get_state())
    return twin


def copy_encoder(encoder):
    if encoder is None:
        return None
    twin = encoder.ae.encoder()
    twin.load_state(encoder.get_state())
    return twin


def decode(decoder, latents):
    """latents [n, C, h, w] float -> frames [T, 3, H, W] float32 in [0, 1] on CPU (display size)."""
    return decoder.decode(latents).float().cpu()


def encode(encoder, frames, fit: str):
    """frames [T, 3, H, W] float in [0, 1], T a multiple of frames_per_latent -> latents [n, C, h, w]
    float32 CPU. Frames not at the model's pixel size are fitted (crop / stretch / pad / error)."""
    return encoder.encode(frames, fit).float().cpu()
