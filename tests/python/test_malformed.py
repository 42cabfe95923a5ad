"""Hostile-input tests of the GGUF reader through `resident inspect`.

Each malformed file (see make_malformed.py) must make `resident inspect` exit non-zero with exactly
one stderr line "error: ..." naming the broken field, no sanitizer report or crash, within a
timeout. The valid base file (written by gguf.GGUFWriter) must load, and `inspect --json` must
agree with the reference reader (gguf.GGUFReader) on it and on the real model.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

gguf = pytest.importorskip("gguf")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_malformed  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BINARY = os.environ.get("RESIDENT_BINARY", str(REPO / "build" / "resident"))
MODEL = Path(os.environ.get("RESIDENT_MODEL",
                            Path.home() / ".cache/resident/qwen2.5-coder-1.5b-q4_k_m.gguf"))
TIMEOUT_S = 20  # a header parse takes milliseconds; anything near this is a hang

# Cases are built at collection time so each gets its own test id.
_WORK = Path(tempfile.mkdtemp(prefix="resident_malformed_"))
atexit.register(shutil.rmtree, _WORK, ignore_errors=True)
make_malformed.write_base(_WORK / "base.gguf")
BASE = (_WORK / "base.gguf").read_bytes()
CASES = make_malformed.cases(BASE)


def run_inspect(path: Path, *args: str) -> subprocess.CompletedProcess:
    if not Path(BINARY).exists():
        pytest.skip(f"resident binary not found at {BINARY} (set RESIDENT_BINARY)")
    return subprocess.run([BINARY, "inspect", str(path), *args], capture_output=True, text=True,
                          errors="replace", timeout=TIMEOUT_S)


LOAD_ASAN = os.environ.get("RESIDENT_LOAD_ASAN", str(REPO / "build" / "tests" / "resident_load_asan"))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_rejected_under_asan(case: make_malformed.Case, tmp_path: Path) -> None:
    """The same corpus through the reader built with ASan + UBSan: a clean one-line rejection,
    and no sanitizer report (an out-of-bounds read would abort with one)."""
    if not Path(LOAD_ASAN).exists():
        pytest.skip(f"resident_load_asan not found at {LOAD_ASAN} (set RESIDENT_LOAD_ASAN)")
    path = tmp_path / f"{case.name}.gguf"
    path.write_bytes(case.data)
    proc = subprocess.run([LOAD_ASAN, str(path)], capture_output=True, text=True,
                          errors="replace", timeout=TIMEOUT_S * 3)
    assert "Sanitizer" not in proc.stderr and "runtime error" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr


def test_base_file_loads_under_asan(tmp_path: Path) -> None:
    if not Path(LOAD_ASAN).exists():
        pytest.skip(f"resident_load_asan not found at {LOAD_ASAN} (set RESIDENT_LOAD_ASAN)")
    path = tmp_path / "base.gguf"
    path.write_bytes(BASE)
    proc = subprocess.run([LOAD_ASAN, str(path)], capture_output=True, text=True, timeout=60)
    # The base file is a valid GGUF but not a complete model: the model binding must reject it
    # cleanly (missing architecture keys or tensors), never crash.
    assert "Sanitizer" not in proc.stderr and "runtime error" not in proc.stderr, proc.stderr
    assert proc.returncode in (0, 1), proc.stderr


def test_enough_cases() -> None:
    assert len(CASES) >= 15
    assert len({c.name for c in CASES}) == len(CASES)
    # Every case differs from the base: no case can pass by accident.
    assert all(c.data != BASE for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_rejected(case: make_malformed.Case, tmp_path: Path) -> None:
    path = tmp_path / f"{case.name}.gguf"
    path.write_bytes(case.data)
    proc = run_inspect(path)
    output = proc.stdout + proc.stderr
    for marker in ("Sanitizer", "Segmentation", "runtime error:", "Aborted", "terminate called"):
        assert marker not in output, output
    assert proc.returncode == 1, f"exit code {proc.returncode}; output:\n{output}"
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got:\n{proc.stderr}"
    assert lines[0].startswith(f"error: {path}: "), lines[0]
    assert case.field in lines[0], f"field {case.field!r} not named in: {lines[0]}"
    assert proc.stdout == "", "nothing may be printed for a file that failed to load"


def _reference_tensors(reader) -> list[dict]:
    return [{"name": t.name, "type_id": int(t.tensor_type), "shape": [int(d) for d in t.shape],
             "bytes": int(t.n_bytes), "offset": int(t.data_offset - reader.data_offset)}
            for t in reader.tensors]


def _ours_tensors(doc: dict) -> list[dict]:
    return [{k: t[k] for k in ("name", "type_id", "shape", "bytes", "offset")} for t in doc["tensors"]]


def test_base_file_matches_reference_reader(tmp_path: Path) -> None:
    path = tmp_path / "base.gguf"
    path.write_bytes(BASE)
    proc = run_inspect(path, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    reader = gguf.GGUFReader(str(path))
    assert doc["version"] == 3
    assert doc["alignment"] == 64
    assert _ours_tensors(doc) == _reference_tensors(reader)
    assert doc["total_tensor_bytes"] == sum(int(t.n_bytes) for t in reader.tensors)
    ours = {m["key"]: m for m in doc["metadata"]}
    ref_keys = [k for k in reader.fields if not k.startswith("GGUF.")]
    assert list(ours) == ref_keys
    for key in ref_keys:
        field = reader.fields[key]
        want = field.contents()
        got = ours[key]
        if got["type"] == "array":
            assert got["value"]["count"] == len(want)
            assert got["value"]["head"] == want[: len(got["value"]["head"])]
        else:  # floats too: float32 -> double is exact on both sides
            assert got["value"] == want, key
    # The text form has the same tensor table and total.
    text = run_inspect(path).stdout
    assert "blk.0.b.weight" in text and "Q4_K" in text and "[256, 2]" in text
    assert f"total tensor bytes: {doc['total_tensor_bytes']}" in text


def test_real_model_matches_reference_reader() -> None:
    if not MODEL.exists():
        pytest.skip(f"model not found at {MODEL} (set RESIDENT_MODEL)")
    start = time.monotonic()
    proc = run_inspect(MODEL, "--json")
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    # The header holds ~450k tokenizer entries; process start, parse and JSON must stay quick.
    assert elapsed < 2.0, f"inspect took {elapsed:.2f}s"
    doc = json.loads(proc.stdout)
    reader = gguf.GGUFReader(str(MODEL))
    assert _ours_tensors(doc) == _reference_tensors(reader)
    ours = {m["key"]: m for m in doc["metadata"]}
    assert ours["tokenizer.ggml.tokens"]["value"]["count"] == 151936
    assert ours["tokenizer.ggml.merges"]["value"]["count"] == 151387
    assert ours["tokenizer.ggml.token_type"]["value"]["elem_type"] == "int32"
    assert ours["qwen2.block_count"]["value"] == 28
    assert doc["total_tensor_bytes"] == sum(int(t.n_bytes) for t in reader.tensors)
