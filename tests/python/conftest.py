"""Shared pytest fixtures: the resident binary, the real model, synthetic models.

- ``resident_binary``: path of the built binary ($RESIDENT_BINARY, else <repo>/build/resident).
  A missing binary fails the test (a broken build must not look like a skip).
- ``run_resident(*args, check=True)``: runs the binary, returns CompletedProcess (text).
- ``real_model``: path of the real Qwen2.5-Coder-1.5B Q4_K_M file ($RESIDENT_MODEL, else
  /root/.cache/resident/qwen2.5-coder-1.5b-q4_k_m.gguf); SKIPS with the reason if absent.
- ``synth_model(preset="tiny", quant="q8_0", seed=0)``: path of a `resident synth` model in a
  session temp dir, built once per (preset, quant, seed).
- ``fresh_rng``: numpy Generator with a fresh seed, printed so a failure can be replayed
  (set RESIDENT_TEST_SEED to replay).
"""

from __future__ import annotations

import os
import pathlib
import secrets
import subprocess

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_MODEL = "/root/.cache/resident/qwen2.5-coder-1.5b-q4_k_m.gguf"


@pytest.fixture(scope="session")
def resident_binary() -> str:
    path = os.environ.get("RESIDENT_BINARY") or str(REPO / "build" / "resident")
    if not os.access(path, os.X_OK):
        pytest.fail(f"resident binary not found at {path} (build it, or set RESIDENT_BINARY)")
    return path


@pytest.fixture(scope="session")
def run_resident(resident_binary):
    def run(*args, check=True, timeout=600):
        proc = subprocess.run([resident_binary, *map(str, args)], capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"resident {' '.join(map(str, args))} failed "
                                 f"({proc.returncode}): {proc.stderr.strip()}")
        return proc

    return run


@pytest.fixture(scope="session")
def real_model() -> str:
    path = os.environ.get("RESIDENT_MODEL") or DEFAULT_MODEL
    if not os.path.isfile(path):
        pytest.skip(f"real model not found at {path} (set RESIDENT_MODEL to a Qwen2.5 GGUF)")
    return path


@pytest.fixture(scope="session")
def synth_model(tmp_path_factory, run_resident):
    cache: dict[tuple, str] = {}

    def make(preset: str = "tiny", quant: str = "q8_0", seed: int = 0) -> str:
        key = (preset, quant, seed)
        if key not in cache:
            out = tmp_path_factory.mktemp("synth") / f"{preset}-{quant}-{seed}.gguf"
            run_resident("synth", "--preset", preset, "--quant", quant, "--seed", seed, "-o", out)
            cache[key] = str(out)
        return cache[key]

    return make


@pytest.fixture
def fresh_rng(request) -> np.random.Generator:
    seed = int(os.environ.get("RESIDENT_TEST_SEED") or secrets.randbits(32))
    print(f"{request.node.name}: RESIDENT_TEST_SEED={seed}")
    return np.random.default_rng(seed)
