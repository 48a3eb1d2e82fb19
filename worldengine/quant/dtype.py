"""The CPU compute dtype for `dtype=auto`, chosen by measuring this machine at the model's own shapes.

On accelerators auto means bfloat16. On a CPU the answer depends on the instructions it has: with AMX
(Intel Sapphire Rapids and later) a bfloat16 GEMM ran 4x and bfloat16 SDPA 2.4x faster than float32 at
cpu-small's shapes, while without AMX bfloat16 SDPA measured no faster than float32 and the reference
model's float32 path is the bit-for-bit one. So auto times one transformer layer's two heavy kinds of
work in each dtype — the MLP up-projection [T, d] x [d, r*d] and the ring attention of one KV head
(folded queries [G*T, dh] against the local ring's keys) — and takes bfloat16 only when it is at least
`1 / MARGIN` times faster. The verdict is kept per machine by `worldengine.quant.select` (the same
store as the kernel choices), so a restart picks the same dtype without timing again.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from worldengine.options import DType, torch_dtype
from worldengine.quant import select

# bfloat16 must take at most this fraction of float32's time: it rounds activations to 8 mantissa
# bits, which is only worth a clear speed gain (timing noise on a shared machine is a few percent).
MARGIN = 0.8


def resolve_dtype(dtype, device, config) -> torch.dtype:
    """The torch dtype an engine of `config` computes in: explicit choices and accelerators as
    `torch_dtype`; auto on a CPU as measured here (`cpu_auto_dtype`)."""
    explicit = isinstance(dtype, torch.dtype) or DType.parse(dtype) is not DType.AUTO
    if explicit or torch.device(device).type != "cpu":
        return torch_dtype(dtype, device)
    return cpu_auto_dtype(config)


def probe_key(config) -> tuple:
    """The kernel-store key of `cpu_auto_dtype`'s measurement: the shapes it times."""
    tokens = config.tokens_per_frame
    return ("auto-dtype", tokens, config.d_model, config.mlp_ratio * config.d_model,
            config.n_heads // config.n_kv_heads, config.d_head, (config.local_window + 1) * tokens)


def cpu_auto_dtype(config) -> torch.dtype:
    """bfloat16 if one layer's work (MLP up-projection + one KV head's ring attention) at `config`'s
    shapes runs at most MARGIN of its float32 time on this CPU (one thread), else float32."""
    key = probe_key(config)
    select.fastest(key, lambda: {name: _layer_probe(key, dtype)
                                 for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16))})
    times = select.times_ms(key)
    return torch.bfloat16 if times["bfloat16"] <= MARGIN * times["float32"] else torch.float32


def _layer_probe(key: tuple, dtype: torch.dtype):
    """A zero-argument call doing one layer's heavy work (the shapes of `probe_key`) in `dtype` on
    random inputs."""
    _, tokens, d_model, hidden, group, d_head, n_keys = key
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(tokens, d_model, generator=gen).to(dtype)
    weight = (torch.randn(hidden, d_model, generator=gen) * d_model ** -0.5).to(dtype)
    q = F.rms_norm(torch.randn(1, group * tokens, d_head, generator=gen), (d_head,)).to(dtype)
    k = F.rms_norm(torch.randn(1, n_keys, d_head, generator=gen), (d_head,)).to(dtype)
    v = torch.randn(1, n_keys, d_head, generator=gen).to(dtype)

    def layer():
        F.linear(x, weight)
        F.scaled_dot_product_attention(q, k, v)

    return layer
