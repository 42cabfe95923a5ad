"""End-to-end: `resident logits` against the independent float64 reference (reference_forward.py).

What is compared, and why the tolerances are what they are
============================================================
The engine is not a float64 model: by design (docs/numerics.md) it
  (a) quantizes every activation that meets a block-quantized weight to int8 in blocks of 32
      (scale amax/127, round half to even),
  (b) stores K and V as fp16,
  (c) computes everything else in float32.
So two references are run over the same weights (one pass, `forward(..., variants)`):
  EMU  = float64 with (a) and (b) applied (the engine's deliberate approximations),
  PURE = float64 with neither (the model as defined).
Errors are relative L2 over the vocabulary, per position: |l_eng - l_ref| / |l_ref|.

(i) engine vs EMU: only float32 rounding separates them -- until a rounding decision flips.
  Float32 part: every op rounds with unit roundoff u = 2^-24; a layer is a chain of ~10
  roundings (norm, dot-partials, sequential block sums of n/32 terms whose errors add like a
  random walk, exp polynomial, residual add). Summed in quadrature over the layers:
  ~ 10 u sqrt(n_layers + 1) ~ 1.4e-6 for 2 layers; we allow k = 32 per sqrt(layer):
      T32 = 32 u sqrt(n_layers + 1)                                  (2.5e-6 for tiny)
  fp16 KV part: the engine's float32 K/V differ from EMU's by ~delta = 8u relative, so an fp16
  rounding goes the other way with probability ~ 2 delta / 2^-10 per element, moving that
  element by one fp16 ulp (<= 2^-10 relative). Spread over many elements the logits move by
  ~ sqrt(P) 2^-10 = sqrt(2 delta 2^-10) = sqrt(16 u 2^-10) ~ 3.1e-5; we allow 6x:
      T16 = 6 sqrt(16 u 2^-10)                                       (1.8e-4)
      T_TIGHT = T32 + T16
  Measured (tiny f16, 320 positions): max 9.6e-5; int8 models: ~1e-7 where no flip happened.
  int8 flips: when x*127/amax lies within float32 noise of k + 1/2, engine and EMU round to
  different integers. One flip moves that element by a full step d = amax/127, i.e. the matmul
  output by ~ (amax/rms)/(127 sqrt(n)) ~ 1e-3 relative, which flips ~5% of the next
  quantization's decisions: it CASCADES to the size of the int8 noise itself. So engine vs EMU
  is bimodal: T_TIGHT-level or int8-noise level at a position. This cannot be made tight for a
  deep model (the real model cascades at every position; tie margins there are < 1e-6 steps);
  on the tiny models the test asserts
    - f16 (no int8 activations): every position <= T_TIGHT;
    - q8_0 / q4_k_m: every position <= the cascade bound below, AND at least 1/4 of the
      positions (pooled over fresh sequences) <= T_TIGHT. Measured: 55-75% are tight. An engine
      off by even 1e-5 relative anywhere flips ~everything (0% tight), so this fraction is the
      sharp part of the test.

(ii) engine vs PURE: dominated by the int8 activation rounding. Per element the rounding error
  is at most d/2 = amax/254 and, for values spread over many steps, ~uniform on [-d/2, d/2]
  (rms d/sqrt(12)). The reference measures, at each of a position's own quantization points m,
  rho_m = |x_q - x| / |x| exactly, and reports act_noise = sqrt(sum_m rho_m^2): the relative
  noise injected, assuming independent errors. Each matmul output inherits rho_m (weights
  uncorrelated with the rounding error), RMSNorm'd residual layers roughly preserve relative
  errors (gain ~1), so  err_PURE ~ G * act_noise  with G ~ 1. Measured G over 640 tiny
  positions: 0.57 .. 1.43 (median 0.95). We assert  err_PURE <= 3 act_noise  (G <= 3).
  Cascade bound for (i): engine and EMU are then two independent roundings of the same kind, so
  err_EMU <= 3 sqrt(2) act_noise.
  For f16 models (no int8), PURE differs by the fp16 KV rounding: relative <= u16 = 2^-11 per
  element, ~u16/sqrt(3) rms, added over 2 (K, V) x n_layers caches: we allow
  3 u16 sqrt(2 n_layers) (measured max 6.1e-4 for tiny vs bound 2.9e-3).
  Greedy tokens: argmax(engine) must equal argmax(PURE) wherever the reference's top-1/top-2
  gap exceeds 6 sqrt(2) sigma, where sigma = bound * rms(logits) is the per-logit error the L2
  bound allows (a per-logit error is a sum of many small independent contributions, ~normal;
  the difference of two such errors exceeding the gap is then a > 6-sigma event). Positions
  with a smaller gap are near-ties at the tolerance and are only reported.
"""

from __future__ import annotations

import math
import os
import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import reference_forward as rf  # noqa: E402

U32 = 2.0 ** -24
U16 = 2.0 ** -11
TINY_LAYERS = 2
N_POS_TINY = 16
N_SEQ_TINY = 6

# A ChatML prefix in the real Qwen2.5 vocabulary:
# <|im_start|> system \n You _are _a _helpful _assistant
REAL_IDS = [151644, 8948, 198, 2610, 525, 264, 10950, 17847]


def t_tight(n_layers: int) -> float:
    return 32 * U32 * math.sqrt(n_layers + 1) + 6 * math.sqrt(16 * U32 * 2.0 ** -10)


N_REALIZATIONS = 4
DITHER = 2.0 ** -20  # 16 u: float32-level noise on each value before it is rounded


def reference_variants():
    """PURE, EMU, then N_REALIZATIONS dithered EMUs (other realizations of the rounding noise)."""
    return [rf.Variant(), rf.Variant(True, True)] + [
        rf.Variant(True, True, DITHER, seed=k + 1) for k in range(N_REALIZATIONS)]


class Run:
    """Engine and reference logits for one or more sequences (positions concatenated)."""

    def __init__(self, eng, logits, stats):
        self.eng = eng
        self.pure, self.emu = logits[0], logits[1]
        self.stats = stats[1]
        reals = logits[2:]
        # Per position: rms over realizations of the relative L2 deviation from PURE, and of the
        # per-logit deviation (absolute).
        self.noise = np.sqrt(np.mean([rel_err(r, self.pure) ** 2 for r in reals], axis=0))
        self.noise_abs = np.sqrt(np.mean([np.mean((r - self.pure) ** 2, axis=1) for r in reals],
                                         axis=0))

    @staticmethod
    def concat(runs):
        out = Run.__new__(Run)
        for name in ("eng", "pure", "emu", "noise", "noise_abs"):
            setattr(out, name, np.concatenate([getattr(r, name) for r in runs]))
        out.stats = rf.Stats(np.concatenate([r.stats.tie_margin for r in runs]),
                             np.concatenate([r.stats.act_noise for r in runs]))
        return out


def rel_err(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)


def engine_logits(run_resident, model: str, ids, out: pathlib.Path) -> np.ndarray:
    out.unlink(missing_ok=True)
    run_resident("logits", "-m", model, "--ids", ",".join(map(str, ids)), "-o", out)
    raw = np.fromfile(out, dtype="<f4")
    vocab = rf.GGUFModel(model).config.vocab
    assert raw.size == len(ids) * vocab, f"expected {len(ids)} x {vocab} floats, got {raw.size}"
    assert np.all(np.isfinite(raw)), "non-finite logits"
    return raw.reshape(len(ids), vocab).astype(np.float64)


def greedy_check(eng: np.ndarray, pure: np.ndarray, sigma: np.ndarray):
    """(decisive positions, mismatching decisive positions, near-tie positions)."""
    top2 = np.sort(pure, axis=1)[:, -2:]
    gap = top2[:, 1] - top2[:, 0]
    decisive = gap > 6 * math.sqrt(2) * sigma
    mismatch = decisive & (eng.argmax(axis=1) != pure.argmax(axis=1))
    return np.flatnonzero(decisive), np.flatnonzero(mismatch), np.flatnonzero(~decisive)


# ---------------------------------------------------------------------------------------------
# The reference's own building blocks (no binary needed): these guard the yardstick.


def test_activation_quantization_matches_spec(fresh_rng):
    x = fresh_rng.normal(size=(3, 256)) * fresh_rng.uniform(0.1, 10, size=(3, 1))
    x[0, 5] = 0.0
    x[2, 32:64] = 0.0  # an all-zero block
    xq, _ = rf.quantize_activations(x)
    blocks = x.reshape(3, 8, 32)
    amax = np.abs(blocks).max(axis=-1, keepdims=True)
    err = np.abs(xq.reshape(3, 8, 32) - blocks)
    # Half a step, plus float64 slack for q * d (q <= 127, relative 2^-52 each).
    assert np.all(err <= amax / 254 * (1 + 1e-12))
    assert np.all(xq[2, 32:64] == 0)
    # The block maximum is exactly representable: q = +-127.
    idx = np.abs(blocks).argmax(axis=-1)
    assert np.allclose(np.take_along_axis(xq.reshape(3, 8, 32), idx[..., None], -1),
                       np.take_along_axis(blocks, idx[..., None], -1), rtol=1e-15, atol=0)
    # Ties go to even: 2.5 steps -> 2, 3.5 -> 4, -0.5 -> 0.
    t = np.zeros((1, 32))
    t[0, :4] = [127.0, 2.5, 3.5, -0.5]
    assert list(rf.quantize_activations(t)[0][0, :4]) == [127.0, 2.0, 4.0, 0.0]


def test_rope_is_a_rotation_with_the_right_pairs(fresh_rng):
    cfg = rf.Config("qwen2", 1, 64, 64, 2, 1, 8, 10, 1e4, 1e-6, True)
    cos, sin = rf.rope_tables(cfg, 5)
    x = fresh_rng.normal(size=(5, 2, 8))
    for neox in (True, False):
        y = rf.apply_rope(x, cos, sin, neox)
        assert np.allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-13)
        assert np.allclose(y[0], x[0], rtol=0, atol=0)  # position 0: angle 0
    # NEOX pairs (i, i + 4) rotate together; (0, 1) do not.
    y = rf.apply_rope(x, cos, sin, True)
    a = x[3, 0, [0, 4]]
    b = y[3, 0, [0, 4]]
    ang = 3 * 1.0
    assert np.allclose(b, [a[0] * math.cos(ang) - a[1] * math.sin(ang),
                           a[0] * math.sin(ang) + a[1] * math.cos(ang)], rtol=1e-13)


def test_reference_is_causal_and_variants_agree_without_quantization(synth_model, fresh_rng):
    path = synth_model("tiny", "f16", 1)
    ids = fresh_rng.integers(0, 512, 6)
    (a, b), _ = rf.forward(path, ids, [rf.Variant(), rf.Variant(act_quant=True)])
    # f16 weights: act_quant has nothing to quantize -> bit-identical.
    assert np.array_equal(a, b)
    (prefix,), _ = rf.forward(path, ids[:3])
    assert np.allclose(prefix, a[:3], rtol=1e-12, atol=1e-12)
    assert not np.allclose(a[3], a[4])


# ---------------------------------------------------------------------------------------------
# Tiny synthetic models (always run).


@pytest.fixture(scope="module", params=["f16", "q8_0", "q4_k_m", "llama:q4_k_m"])
def tiny_run(request, synth_model, run_resident, tmp_path_factory):
    # "llama:<quant>" is the tiny shape with arch llama (interleaved rope, no biases).
    preset, quant = ("tiny-llama", request.param[6:]) if request.param.startswith("llama:") \
        else ("tiny", request.param)
    seed = int(os.environ.get("RESIDENT_TEST_SEED") or np.random.SeedSequence().entropy % 2**31)
    print(f"tiny {quant}: RESIDENT_TEST_SEED={seed}")
    rng = np.random.default_rng(seed)
    path = synth_model(preset, quant, seed)
    model = rf.GGUFModel(path)
    out = tmp_path_factory.mktemp("logits") / "logits.bin"
    runs = []
    for _ in range(N_SEQ_TINY):
        ids = rng.integers(0, model.config.vocab, N_POS_TINY)
        eng = engine_logits(run_resident, path, ids, out)
        runs.append(Run(eng, *rf.forward(model, ids, reference_variants())))
    return quant, Run.concat(runs)


def test_tiny_engine_matches_emulating_reference(tiny_run):
    quant, run = tiny_run
    err = rel_err(run.eng, run.emu)
    tight = err <= t_tight(TINY_LAYERS)
    print(f"{quant}: engine vs EMU max {err.max():.2e}, median {np.median(err):.2e}, "
          f"tight {tight.sum()}/{len(err)}")
    if quant == "f16":
        assert tight.all(), f"positions over {t_tight(TINY_LAYERS):.2e}: {np.flatnonzero(~tight)}"
    else:
        cascade = 3 * math.sqrt(2) * run.noise
        assert np.all(err <= cascade), f"positions over the cascade bound: {np.flatnonzero(err > cascade)}"
        assert tight.mean() >= 0.25, f"only {tight.sum()}/{len(err)} positions tight"


def test_tiny_engine_matches_pure_reference(tiny_run):
    quant, run = tiny_run
    bound = 3 * run.noise
    err = rel_err(run.eng, run.pure)
    print(f"{quant}: engine vs PURE max {err.max():.2e}, err/noise max {(err / run.noise).max():.2f}"
          f" median {np.median(err / run.noise):.2f}")
    assert np.all(err <= bound), f"positions over the bound: {np.flatnonzero(err > bound)}"
    decisive, mismatch, ties = greedy_check(run.eng, run.pure, run.noise_abs)
    print(f"{quant}: greedy decisive {len(decisive)}, near-ties {len(ties)}")
    assert len(mismatch) == 0, f"greedy token differs at decisive positions {mismatch}"
    assert len(decisive) >= 2, "too few decisive positions for the greedy check to mean anything"


# ---------------------------------------------------------------------------------------------
# The real model (skips without it).


@pytest.fixture(scope="module")
def real_run(real_model, run_resident, tmp_path_factory):
    out = tmp_path_factory.mktemp("logits") / "real.bin"
    eng = engine_logits(run_resident, real_model, REAL_IDS, out)
    model = rf.GGUFModel(real_model)
    return Run(eng, *rf.forward(model, REAL_IDS, reference_variants()))


def test_real_model_matches_pure_reference(real_run):
    run = real_run
    bound = 3 * run.noise
    err = rel_err(run.eng, run.pure)
    print("engine vs PURE:", np.array2string(err, precision=4))
    print("noise:         ", np.array2string(run.noise, precision=4))
    print("act_noise:     ", np.array2string(run.stats.act_noise, precision=4))
    assert np.all(err <= bound), f"positions over the bound: {np.flatnonzero(err > bound)}"
    decisive, mismatch, ties = greedy_check(run.eng, run.pure, run.noise_abs)
    print(f"greedy: decisive {decisive.tolist()}, near-ties {ties.tolist()}, "
          f"engine {run.eng.argmax(1).tolist()}, reference {run.pure.argmax(1).tolist()}")
    assert len(mismatch) == 0, f"greedy token differs at decisive positions {mismatch}"
    # The decisive set depends on the reference only (measured: 4 of 8 for REAL_IDS).
    assert len(decisive) >= 3, "too few decisive positions"


def test_real_model_matches_emulating_reference(real_run):
    # Not tight on a 28-layer model: int8 rounding flips cascade (see the module docstring).
    # What remains checkable is that the engine is within the cascade bound of EMU at every
    # position, i.e. it behaves like one more realization of the same rounding noise.
    run = real_run
    err = rel_err(run.eng, run.emu)
    cascade = 3 * math.sqrt(2) * run.noise
    print("engine vs EMU: ", np.array2string(err, precision=4))
    print("tie margins:   ", np.array2string(run.stats.tie_margin, precision=2))
    assert np.all(err <= cascade), f"positions over the cascade bound: {np.flatnonzero(err > cascade)}"
