"""Quant formats against the `gguf` package (the reference NumPy dequantizers).

For every supported type: random *valid* blocks (random bytes everywhere, so every quant value
and packed 6-bit scale pattern occurs, with the fp16 scale fields replaced by finite random
values) are dequantized by `resident debug-quant dequant` and by gguf.quants.dequantize; the
float32 results must be identical bit for bit (compared as uint32, so -0.0 vs 0.0 or a
different NaN would fail too). Our quantizer's output must be valid blocks that gguf decodes to
values close to the input (bound: half of the block's grid step, see quantize.cpp).
"""

import os
import pathlib
import subprocess

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as T  # noqa: E402
from gguf.quants import dequantize  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]
BINARY = os.environ.get("RESIDENT_BINARY", str(REPO / "build" / "resident"))

# type name -> byte offsets of the fp16 scale fields inside one block
FP16_FIELDS = {
    "Q8_0": [0],
    "Q4_0": [0],
    "Q5_0": [0],
    "Q4_K": [0, 2],
    "Q5_K": [0, 2],
    "Q6_K": [208],
}
ALL_TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q5_0", "Q4_K", "Q5_K", "Q6_K"]


def binary():
    if not os.path.exists(BINARY):
        pytest.skip(f"resident binary not found at {BINARY} (set RESIDENT_BINARY)")
    return BINARY


def run_debug_quant(tmp_path, action, type_name, data: bytes) -> bytes:
    src = tmp_path / f"{action}_{type_name}.in"
    dst = tmp_path / f"{action}_{type_name}.out"
    src.write_bytes(data)
    subprocess.run(
        [binary(), "debug-quant", action, "--type", type_name, "--in", str(src), "--out", str(dst)],
        check=True,
        capture_output=True,
    )
    return dst.read_bytes()


def random_blocks(rng, type_name, n_blocks):
    qt = T[type_name]
    block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qt]
    if type_name == "F32":
        return rng.standard_normal(n_blocks).astype(np.float32).tobytes()
    if type_name == "F16":
        return rng.standard_normal(n_blocks).astype(np.float16).tobytes()
    if type_name == "BF16":
        f = rng.standard_normal(n_blocks).astype(np.float32).view(np.uint32)
        return (f >> 16).astype(np.uint16).tobytes()
    raw = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    for off in FP16_FIELDS[type_name]:
        # Finite scales over a wide exponent range, both signs, subnormals included.
        mag = np.exp(rng.uniform(np.log(1e-7), np.log(60000.0), size=n_blocks))
        sign = np.where(rng.random(n_blocks) < 0.3, -1.0, 1.0)
        scale = (mag * sign).astype(np.float16)
        assert np.all(np.isfinite(scale))
        raw[:, off : off + 2] = scale.view(np.uint8).reshape(n_blocks, 2)
    return raw.tobytes()


@pytest.mark.parametrize("type_name", ALL_TYPES)
def test_dequant_bit_identical_to_gguf(tmp_path, type_name):
    rng = np.random.default_rng()
    qt = T[type_name]
    block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qt]
    n_blocks = 4096 if block_elems == 1 else 512
    data = random_blocks(rng, type_name, n_blocks)
    ours = np.frombuffer(run_debug_quant(tmp_path, "dequant", type_name, data), dtype=np.float32)
    ref = dequantize(np.frombuffer(data, dtype=np.uint8).reshape(n_blocks, block_bytes), qt)
    ref = np.asarray(ref, dtype=np.float32).reshape(-1)
    assert ours.shape == ref.shape
    # Values must be finite and not all zero, or the comparison proves little.
    assert np.all(np.isfinite(ref)) and np.count_nonzero(ref) > ref.size // 2
    mismatch = np.flatnonzero(ours.view(np.uint32) != ref.view(np.uint32))
    assert mismatch.size == 0, (
        f"{mismatch.size} values differ, first at {mismatch[0]}: "
        f"ours {ours[mismatch[0]]!r} gguf {ref[mismatch[0]]!r}"
    )


@pytest.mark.parametrize("type_name", ALL_TYPES)
def test_quantize_decodes_close_to_input(tmp_path, type_name):
    rng = np.random.default_rng()
    qt = T[type_name]
    block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qt]
    n = 256 * 64
    x = rng.standard_normal(n).astype(np.float32)
    x[rng.integers(0, n, 40)] *= 30.0  # outliers: blocks with a wide range
    blocks = run_debug_quant(tmp_path, "quantize", type_name, x.tobytes())
    assert len(blocks) == n // block_elems * block_bytes
    y = np.asarray(
        dequantize(np.frombuffer(blocks, dtype=np.uint8).reshape(-1, block_bytes), qt),
        dtype=np.float32,
    ).reshape(-1)
    # Our dequantizer agrees with gguf on our own blocks too.
    ours = np.frombuffer(run_debug_quant(tmp_path, "dequant", type_name, blocks), dtype=np.float32)
    assert np.array_equal(ours.view(np.uint32), y.view(np.uint32))
    # Error bound per 32-block (quantize.cpp): half a grid step, where a step is about
    # range / levels (levels: 127 for Q8_0 over [-amax, amax] -> 2 amax / 254; 15 Q4_0 over
    # [-amax, amax]; 31 Q5_0; 15 Q4_K / 31 Q5_K over [min(x,0), max(x)]; 62 Q6_K over
    # [-amax16, amax16]) plus the rounding-up of the super-block scale (at most one step of d,
    # d <= max step / 63 (K) or / 127 (Q6_K)); Q4_0/Q5_0 clip one extreme by a full step.
    # The factors below take those worst cases with 10% slack; float types: half an ulp.
    xb = x.reshape(-1, 32).astype(np.float64)
    err = np.abs(y.reshape(-1, 32) - xb).max(axis=1)
    amax = np.abs(xb).max(axis=1)
    rng_k = xb.max(axis=1) - np.minimum(xb.min(axis=1), 0)
    if type_name == "F32":
        bound = np.zeros_like(amax)
    elif type_name == "F16":
        bound = amax * 2.0**-11
    elif type_name == "BF16":
        bound = amax * 2.0**-8
    elif type_name == "Q8_0":
        bound = 0.5 * amax / 127
    elif type_name == "Q4_0":
        bound = amax / 8
    elif type_name == "Q5_0":
        bound = amax / 16
    else:
        levels = {"Q4_K": 15, "Q5_K": 31}.get(type_name)
        sup = xb.reshape(-1, 8, 32)
        if levels:
            sup_range = (sup.max(axis=2) - np.minimum(sup.min(axis=2), 0)).max(axis=1)
            d = np.repeat(sup_range / levels / 63, 8) * 2  # step of d, and of dmin's rounding
            bound = 0.5 * (rng_k / levels + d)
        else:
            sup_amax = np.abs(sup).max(axis=(1, 2))
            d = np.repeat(sup_amax / 31 / 127, 8)
            bound = 0.5 * (amax / 31 + d)
    bound = bound * 1.1 + 1e-6 * amax
    worst = np.argmax(err - bound)
    assert np.all(err <= bound), f"block {worst}: error {err[worst]} > bound {bound[worst]}"
    # And the quantizer is not trivially exact or trivially bad: mean error well below amax.
    if type_name not in ("F32",):
        assert 0 < err.mean() < 0.1 * amax.mean()


def test_unknown_type_is_an_error(tmp_path):
    src = tmp_path / "x.bin"
    src.write_bytes(b"\0" * 64)
    r = subprocess.run(
        [binary(), "debug-quant", "dequant", "--type", "Q4_1", "--in", str(src), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    assert r.stderr.startswith("error:") and "Q4_1" in r.stderr
