"""Independent float64 forward pass for GGUF qwen2 / llama models (numpy + the `gguf` package).

This file does not use any of resident's C++ code. Weights are dequantized by
`gguf.quants.dequantize` and every operation runs in float64 with the textbook definitions:
RMSNorm, rotary embeddings (NEOX pairs (i, i + d/2) for qwen2, interleaved pairs (2i, 2i+1) for
llama as converted to GGUF), grouped-query causal attention with a float64 softmax, SwiGLU, and a
tied or untied LM head.

Two optional "engine emulation" switches let a test separate the engine's deliberate
approximations from float rounding (see tests/python/test_reference.py for why):

* ``act_quant``: before a matmul with a block-quantized weight, the activation row is replaced by
  its int8 block-of-32 quantization (amax / 127 scale, round half to even), the way the engine
  feeds quantized weights. The result is still computed in float64.
* ``kv_fp16``: K (after rope) and V are rounded to IEEE half precision before attention, as the
  engine's fp16 KV cache does.

With ``act_quant`` the forward pass also records, for every position, the smallest distance (in
quantization steps) between any ``x * 127 / amax`` and a rounding boundary (k + 0.5). A rounding
decision that close to a tie may legitimately go the other way in float32; callers use this to
know which positions can be compared tightly.

Usage as a script:  python reference_forward.py MODEL.gguf 1,2,3 [--act-quant] [--kv-fp16]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import numpy as np
from gguf import GGUFReader, GGMLQuantizationType
from gguf.quants import dequantize

FLOAT_TYPES = {
    GGMLQuantizationType.F32,
    GGMLQuantizationType.F16,
    GGMLQuantizationType.BF16,
    GGMLQuantizationType.F64,
}

ACT_BLOCK = 32


@dataclasses.dataclass
class Config:
    arch: str
    n_layers: int
    d_model: int
    d_ff: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab: int
    rope_theta: float
    rms_eps: float
    rope_neox: bool


@dataclasses.dataclass
class Stats:
    """Per-position facts about a variant's activation quantization (inf / 0 without it).

    tie_margin[p]: smallest distance, in quantization steps, between a scaled activation
    x * 127 / amax and a rounding boundary k + 0.5, over every quantization position p depends
    on (positions 0..p: earlier positions reach p through the KV cache).
    act_noise[p]: sqrt of the sum over p's own quantization points of (||x_q - x|| / ||x||)^2.
    """

    tie_margin: np.ndarray
    act_noise: np.ndarray


@dataclasses.dataclass
class Variant:
    """One way of running the forward pass (several share one pass over the weights)."""

    act_quant: bool = False
    kv_fp16: bool = False
    # Relative random perturbation applied to every value just before it is rounded (int8 or
    # fp16): a stand-in for float32 noise. It flips the rounding decisions that lie within
    # float32 noise of a tie, so each dither seed gives another realization of the rounding
    # noise, distributed like the engine's.
    dither: float = 0.0
    seed: int = 0


def _field(reader: GGUFReader, key: str, default=None):
    field = reader.fields.get(key)
    if field is None:
        return default
    return field.contents()


class GGUFModel:
    def __init__(self, path: str):
        self.path = path
        self.reader = GGUFReader(path)
        self.tensors = {t.name: t for t in self.reader.tensors}
        r = self.reader
        arch = _field(r, "general.architecture")
        if arch not in ("qwen2", "llama"):
            raise ValueError(f"{path}: unsupported architecture {arch!r}")
        n_heads = int(_field(r, f"{arch}.attention.head_count"))
        d_model = int(_field(r, f"{arch}.embedding_length"))
        head_dim = _field(r, f"{arch}.attention.key_length")
        head_dim = int(head_dim) if head_dim is not None else d_model // n_heads
        embd = self.tensors["token_embd.weight"]
        self.config = Config(
            arch=arch,
            n_layers=int(_field(r, f"{arch}.block_count")),
            d_model=d_model,
            d_ff=int(_field(r, f"{arch}.feed_forward_length")),
            n_heads=n_heads,
            n_kv_heads=int(_field(r, f"{arch}.attention.head_count_kv", n_heads)),
            head_dim=head_dim,
            vocab=int(embd.shape[1]),
            rope_theta=float(_field(r, f"{arch}.rope.freq_base", 10000.0)),
            rms_eps=float(_field(r, f"{arch}.attention.layer_norm_rms_epsilon")),
            rope_neox=(arch != "llama"),
        )

    def has(self, name: str) -> bool:
        return name in self.tensors

    def qtype(self, name: str) -> GGMLQuantizationType:
        return self.tensors[name].tensor_type

    def is_block_quantized(self, name: str) -> bool:
        return self.qtype(name) not in FLOAT_TYPES

    def weight(self, name: str, rows=None) -> np.ndarray:
        """Dequantized float64 weight: (rows, row_length) for matrices, (n,) for vectors."""
        t = self.tensors[name]
        data = t.data
        if rows is not None:
            data = data[rows]
        w = dequantize(np.asarray(data), t.tensor_type).astype(np.float64)
        row_length = int(t.shape[0])
        if len(t.shape) == 1:
            return w.reshape(row_length)
        return w.reshape(-1, row_length)

    def n_rows(self, name: str) -> int:
        t = self.tensors[name]
        return int(np.prod([int(s) for s in t.shape[1:]]))


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def quantize_activations(x: np.ndarray):
    """int8 block-of-32 round trip of each row of x; also the distance of every scaled value to
    its nearest rounding boundary (k + 0.5), the minimum per row."""
    n = x.shape[-1]
    if n % ACT_BLOCK:
        raise ValueError(f"activation length {n} is not a multiple of {ACT_BLOCK}")
    blocks = x.reshape(x.shape[0], n // ACT_BLOCK, ACT_BLOCK)
    amax = np.max(np.abs(blocks), axis=-1, keepdims=True)
    scale = amax / 127.0
    inv = np.divide(127.0, amax, out=np.zeros_like(amax), where=amax > 0)
    t = blocks * inv
    q = np.clip(np.round(t), -127, 127)  # np.round rounds half to even
    tie_distance = np.abs(t - np.floor(t) - 0.5)
    # Exact ties (distance 0) come from exactly representable inputs, e.g. an fp16 V row passed
    # through the one-element softmax of position 0: float32 computes those exactly too, so both
    # sides round the same tie the same way. A zero block has no rounding decision at all.
    tie_distance = np.where((tie_distance == 0) | (amax == 0), np.inf, tie_distance)
    xq = (q * scale).reshape(x.shape)
    return xq, tie_distance.reshape(x.shape[0], -1).min(axis=1)


def rope_tables(cfg: Config, n_pos: int, freq_factors=None):
    half = cfg.head_dim // 2
    inv_freq = cfg.rope_theta ** (-2.0 * np.arange(half, dtype=np.float64) / cfg.head_dim)
    if freq_factors is not None:
        inv_freq = inv_freq / freq_factors
    angles = np.arange(n_pos, dtype=np.float64)[:, None] * inv_freq[None, :]
    return np.cos(angles), np.sin(angles)


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray, neox: bool) -> np.ndarray:
    """x: (n_pos, n_heads, head_dim); cos/sin: (n_pos, head_dim/2)."""
    c = cos[:, None, :]
    s = sin[:, None, :]
    out = np.empty_like(x)
    if neox:
        half = x.shape[-1] // 2
        x0, x1 = x[..., :half], x[..., half:]
        out[..., :half] = x0 * c - x1 * s
        out[..., half:] = x0 * s + x1 * c
    else:
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out[..., 0::2] = x0 * c - x1 * s
        out[..., 1::2] = x0 * s + x1 * c
    return out


def attention(q, k, v, n_heads: int, n_kv_heads: int) -> np.ndarray:
    """q: (n, H, hd), k/v: (n, KV, hd) -> (n, H * hd), causal."""
    n, _, hd = q.shape
    group = n_heads // n_kv_heads
    k = np.repeat(k, group, axis=1)
    v = np.repeat(v, group, axis=1)
    scores = np.einsum("phd,thd->hpt", q, k) / np.sqrt(hd)
    mask = np.triu(np.ones((n, n), dtype=bool), k=1)
    scores = np.where(mask[None], -np.inf, scores)
    scores = scores - scores.max(axis=-1, keepdims=True)
    p = np.exp(scores)
    p /= p.sum(axis=-1, keepdims=True)
    out = np.einsum("hpt,thd->phd", p, v)
    return out.reshape(n, n_heads * hd)


def silu(x):
    return x / (1.0 + np.exp(-x))


class _State:
    def __init__(self, variant: Variant, x: np.ndarray):
        self.variant = variant
        self.x = x
        self.tie_margin = np.full(x.shape[0], np.inf)
        # Sum over quantization points of (||x_q - x|| / ||x||)^2, per position: the relative
        # noise that int8 activation rounding injects (tests derive their tolerance from it).
        self.act_noise_sq = np.zeros(x.shape[0])
        self.rng = np.random.default_rng(variant.seed)

    def dithered(self, x: np.ndarray) -> np.ndarray:
        if self.variant.dither == 0.0:
            return x
        return x * (1.0 + self.variant.dither * self.rng.standard_normal(x.shape))

    def activations_for(self, model: GGUFModel, name: str, x: np.ndarray) -> np.ndarray:
        """What the matmul with weight `name` sees: x, or its int8 round trip."""
        if not (self.variant.act_quant and model.is_block_quantized(name)):
            return x
        xq, ties = quantize_activations(self.dithered(x))
        np.minimum(self.tie_margin, ties, out=self.tie_margin)
        norm = np.linalg.norm(x, axis=1)
        self.act_noise_sq += (np.linalg.norm(xq - x, axis=1) / np.where(norm > 0, norm, 1.0)) ** 2
        return xq


def forward(path_or_model, ids, variants=(Variant(),), head_chunk_rows: int = 16384):
    """Logits (n_positions, vocab) float64 for each variant, one pass over the weights.

    Returns (list of logits arrays, list of Stats), one of each per variant.
    """
    model = path_or_model if isinstance(path_or_model, GGUFModel) else GGUFModel(path_or_model)
    cfg = model.config
    ids = np.asarray(ids, dtype=np.int64)
    if ids.ndim != 1 or len(ids) == 0:
        raise ValueError("ids must be a non-empty 1-D sequence")
    if ids.min() < 0 or ids.max() >= cfg.vocab:
        raise ValueError(f"token id out of range [0, {cfg.vocab})")
    n = len(ids)

    # Only the needed rows of the embedding table (dequantize per unique row).
    uniq, inverse = np.unique(ids, return_inverse=True)
    emb = model.weight("token_embd.weight", rows=uniq)[inverse]
    states = [_State(v, emb.copy()) for v in variants]

    freq_factors = model.weight("rope_freqs.weight") if model.has("rope_freqs.weight") else None
    cos, sin = rope_tables(cfg, n, freq_factors)
    hd, H, KV = cfg.head_dim, cfg.n_heads, cfg.n_kv_heads

    for layer in range(cfg.n_layers):
        p = f"blk.{layer}."
        w = {name: model.weight(p + name) for name in (
            "attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight",
            "attn_output.weight", "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight",
            "ffn_down.weight")}
        for bias in ("attn_q.bias", "attn_k.bias", "attn_v.bias"):
            if model.has(p + bias):
                w[bias] = model.weight(p + bias)
        for st in states:
            h = rms_norm(st.x, w["attn_norm.weight"], cfg.rms_eps)
            # q, k and v read one quantization of h (same input, same blocks).
            hq = st.activations_for(model, p + "attn_q.weight", h)

            def proj(name, bias):
                x_in = hq if model.is_block_quantized(p + name) else h
                y = x_in @ w[name].T
                return y + w[bias] if bias in w else y

            q = proj("attn_q.weight", "attn_q.bias").reshape(n, H, hd)
            k = proj("attn_k.weight", "attn_k.bias").reshape(n, KV, hd)
            v = proj("attn_v.weight", "attn_v.bias").reshape(n, KV, hd)
            q = apply_rope(q, cos, sin, cfg.rope_neox)
            k = apply_rope(k, cos, sin, cfg.rope_neox)
            if st.variant.kv_fp16:
                k = st.dithered(k).astype(np.float16).astype(np.float64)
                v = st.dithered(v).astype(np.float16).astype(np.float64)
            a = attention(q, k, v, H, KV)
            a = st.activations_for(model, p + "attn_output.weight", a)
            st.x = st.x + a @ w["attn_output.weight"].T

            h = rms_norm(st.x, w["ffn_norm.weight"], cfg.rms_eps)
            hq = st.activations_for(model, p + "ffn_gate.weight", h)
            g = (hq if model.is_block_quantized(p + "ffn_gate.weight") else h) @ w["ffn_gate.weight"].T
            u = (hq if model.is_block_quantized(p + "ffn_up.weight") else h) @ w["ffn_up.weight"].T
            m = st.activations_for(model, p + "ffn_down.weight", silu(g) * u)
            st.x = st.x + m @ w["ffn_down.weight"].T
        del w

    out_norm = model.weight("output_norm.weight")
    head = "output.weight" if model.has("output.weight") else "token_embd.weight"
    hs = []
    for st in states:
        hs.append(st.activations_for(model, head, rms_norm(st.x, out_norm, cfg.rms_eps)))
    logits = [np.empty((n, cfg.vocab)) for _ in states]
    rows = model.n_rows(head)
    for r0 in range(0, rows, head_chunk_rows):
        r1 = min(rows, r0 + head_chunk_rows)
        wc = model.weight(head, rows=slice(r0, r1))
        for h, out in zip(hs, logits):
            out[:, r0:r1] = h @ wc.T
    return logits, [Stats(np.minimum.accumulate(st.tie_margin), np.sqrt(st.act_noise_sq))
                    for st in states]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("ids", help="comma-separated token ids")
    ap.add_argument("--act-quant", action="store_true")
    ap.add_argument("--kv-fp16", action="store_true")
    ap.add_argument("-o", "--output", help="write float64 logits (.npy)")
    args = ap.parse_args(argv)
    ids = [int(s) for s in args.ids.split(",") if s]
    (logits,), (stats,) = forward(args.model, ids, [Variant(args.act_quant, args.kv_fp16)])
    if args.output:
        np.save(args.output, logits)
    for p in range(len(ids)):
        top = np.argsort(-logits[p])[:5]
        print(f"pos {p} id {ids[p]}: top {list(map(int, top))} "
              f"logits {np.round(logits[p, top], 3).tolist()} tie_margin {stats.tie_margin[p]:.2e} "
              f"act_noise {stats.act_noise[p]:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
