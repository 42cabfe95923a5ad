"""Malformed GGUF files for the hostile-input tests and the fuzz seed corpus.

A small valid file is written by the reference writer (gguf.GGUFWriter); `layout()` walks it and
records where every field lives; each case then patches or cuts the bytes at one field. Every
case carries the field name the reader's error must mention.

    python3 tests/python/make_malformed.py OUT_DIR    # writes base.gguf and every case
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

GGUF_UINT32 = 4
GGUF_STRING = 8
GGUF_ARRAY = 9
SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def write_base(path: Path, seed: int = 0) -> None:
    """A tiny qwen2-like file: a few keys of each kind, three tensors of different types.

    Tensor names have equal lengths (and so do the two uint32 keys) so cases can rename one to
    the other in place. Alignment is 64 via general.alignment so the alignment value can be
    corrupted.
    """
    import gguf

    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), "qwen2")
    w.add_custom_alignment(64)
    w.add_name("tiny")
    w.add_uint32("qwen2.block_count", 1)
    w.add_uint32("qwen2.head_count_", 2)  # same length as the key above
    w.add_float32("qwen2.rope.freq_base", 1e6)
    w.add_bool("tokenizer.ggml.add_bos_token", False)
    w.add_token_list(["a", "b", "<|x|>"])
    w.add_token_types([1, 1, 3])
    w.add_tensor("blk.0.a.weight", rng.standard_normal((2, 8)).astype(np.float32))
    q4k = rng.integers(0, 256, size=(2, 144), dtype=np.uint8)  # 2 rows of one Q4_K block
    w.add_tensor("blk.0.b.weight", q4k, raw_dtype=gguf.GGMLQuantizationType.Q4_K)
    q8 = rng.integers(0, 256, size=(1, 34), dtype=np.uint8)  # 1 row of one Q8_0 block
    w.add_tensor("blk.0.c.weight", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@dataclass
class Kv:
    key: str
    key_len_at: int  # offset of the key's length prefix
    type_at: int
    value_at: int
    value_type: int


@dataclass
class Tensor:
    name: str
    name_len_at: int
    n_dims_at: int
    dims_at: list[int]
    type_at: int
    offset_at: int
    offset: int
    n_bytes: int = 0


@dataclass
class Layout:
    kvs: dict[str, Kv] = field(default_factory=dict)
    tensors: list[Tensor] = field(default_factory=list)
    tensor_table_at: int = 0
    data_at: int = 0
    alignment: int = 32


def _skip_value(b: bytes, pos: int, t: int) -> int:
    if t == GGUF_STRING:
        (n,) = struct.unpack_from("<Q", b, pos)
        return pos + 8 + n
    if t == GGUF_ARRAY:
        et, n = struct.unpack_from("<IQ", b, pos)
        pos += 12
        for _ in range(n):
            pos = _skip_value(b, pos, et)
        return pos
    return pos + SCALAR_SIZES[t]


def layout(b: bytes) -> Layout:
    """Offsets of every field of a valid little-endian GGUF v2/v3 file."""
    lay = Layout()
    n_tensors, n_kv = struct.unpack_from("<QQ", b, 8)
    pos = 24
    for _ in range(n_kv):
        (klen,) = struct.unpack_from("<Q", b, pos)
        key = b[pos + 8 : pos + 8 + klen].decode()
        type_at = pos + 8 + klen
        (t,) = struct.unpack_from("<I", b, type_at)
        lay.kvs[key] = Kv(key, pos, type_at, type_at + 4, t)
        if key == "general.alignment":
            (lay.alignment,) = struct.unpack_from("<I", b, type_at + 4)
        pos = _skip_value(b, type_at + 4, t)
    lay.tensor_table_at = pos
    for _ in range(n_tensors):
        (nlen,) = struct.unpack_from("<Q", b, pos)
        name = b[pos + 8 : pos + 8 + nlen].decode()
        n_dims_at = pos + 8 + nlen
        (n_dims,) = struct.unpack_from("<I", b, n_dims_at)
        dims_at = [n_dims_at + 4 + 8 * i for i in range(n_dims)]
        type_at = n_dims_at + 4 + 8 * n_dims
        offset_at = type_at + 4
        (offset,) = struct.unpack_from("<Q", b, offset_at)
        lay.tensors.append(Tensor(name, pos, n_dims_at, dims_at, type_at, offset_at, offset))
        pos = offset_at + 8
    lay.data_at = (pos + lay.alignment - 1) // lay.alignment * lay.alignment
    return lay


def _patch(b: bytes, at: int, fmt: str, *values) -> bytes:
    out = bytearray(b)
    struct.pack_into(fmt, out, at, *values)
    return bytes(out)


@dataclass
class Case:
    name: str
    data: bytes
    field: str  # must appear in the error message


def cases(base: bytes) -> list[Case]:
    lay = layout(base)
    a, b, c = lay.tensors
    tokens = lay.kvs["tokenizer.ggml.tokens"]
    name_kv = lay.kvs["general.name"]
    out: list[Case] = []

    def add(name: str, data: bytes, field: str) -> None:
        out.append(Case(name, data, field))

    # Truncations: inside the header, each part of the metadata, the tensor table, the data.
    add("empty", b"", "magic")
    add("trunc_magic", base[:3], "magic")
    add("trunc_header", base[:13], "tensor_count")
    add("trunc_kv_count", base[:20], "kv_count")
    # (Cuts before ~150 bytes trip the kv_count bound instead: the counts claim more entries than
    # the bytes that remain can hold. These cuts are late enough to reach the field itself.)
    rope = lay.kvs["qwen2.rope.freq_base"]
    add("trunc_key", base[: rope.key_len_at + 11], "metadata key #5")
    add("trunc_value_type", base[: tokens.type_at + 2], "metadata 'tokenizer.ggml.tokens'")
    add("trunc_float_value", base[: rope.value_at + 2], "metadata 'qwen2.rope.freq_base'")
    add("trunc_array_count", base[: tokens.value_at + 8], "metadata 'tokenizer.ggml.tokens'")
    # Inside the third token string "<|x|>": after count, "a" and "b" (9 bytes each) and 8 + 2.
    add("trunc_array_string", base[: tokens.value_at + 12 + 18 + 10],
        "metadata 'tokenizer.ggml.tokens'[2]")
    add("trunc_tensor_name", base[: b.name_len_at + 10], "tensor #1 name")
    add("trunc_tensor_dims", base[: b.dims_at[0] + 3], "tensor 'blk.0.b.weight'")
    add("trunc_tensor_offset", base[: c.offset_at + 4], "tensor 'blk.0.c.weight'")
    add("trunc_before_data", base[: lay.data_at], "tensor 'blk.0.a.weight'")
    add("trunc_data", base[: lay.data_at + c.offset + 20], "tensor 'blk.0.c.weight'")

    # Header fields.
    add("wrong_magic", b"GGML" + base[4:], "magic")
    add("version_1", _patch(base, 4, "<I", 1), "version")
    add("version_99", _patch(base, 4, "<I", 99), "version")
    add("big_endian", _patch(base, 4, "<I", 0x03000000), "version")
    add("absurd_tensor_count", _patch(base, 8, "<Q", 2**63), "tensor_count")
    add("absurd_kv_count", _patch(base, 16, "<Q", 2**64 - 1), "kv_count")

    # Metadata.
    add("absurd_key_length", _patch(base, name_kv.key_len_at, "<Q", 2**60), "metadata key #")
    add("absurd_string_length", _patch(base, name_kv.value_at, "<Q", 2**62), "metadata 'general.name'")
    add("absurd_array_count", _patch(base, tokens.value_at + 4, "<Q", 2**61),
        "metadata 'tokenizer.ggml.tokens'")
    add("unknown_value_type", _patch(base, name_kv.type_at, "<I", 77), "metadata 'general.name'")
    add("unknown_array_elem_type", _patch(base, tokens.value_at, "<I", 13),
        "metadata 'tokenizer.ggml.tokens'")
    bc, hc = lay.kvs["qwen2.block_count"], lay.kvs["qwen2.head_count_"]
    dup_key = bytearray(base)
    dup_key[hc.key_len_at + 8 : hc.type_at] = base[bc.key_len_at + 8 : bc.type_at]
    add("duplicate_key", bytes(dup_key), "metadata 'qwen2.block_count'")
    align_value = lay.kvs["general.alignment"].value_at
    add("alignment_not_power_of_two", _patch(base, align_value, "<I", 3), "general.alignment")
    add("alignment_zero", _patch(base, align_value, "<I", 0), "general.alignment")
    add("alignment_huge", _patch(base, align_value, "<I", 2**31), "general.alignment")

    # Tensor table.
    add("n_dims_0", _patch(base, b.n_dims_at, "<I", 0), "tensor 'blk.0.b.weight'")
    add("n_dims_5", _patch(base, b.n_dims_at, "<I", 5), "tensor 'blk.0.b.weight'")
    add("zero_dim", _patch(base, a.dims_at[1], "<Q", 0), "tensor 'blk.0.a.weight'")
    overflow = _patch(_patch(base, a.dims_at[0], "<Q", 2**40), a.dims_at[1], "<Q", 2**40)
    add("dims_product_overflow", overflow, "tensor 'blk.0.a.weight'")
    add("row_not_block_multiple", _patch(base, b.dims_at[0], "<Q", 100), "tensor 'blk.0.b.weight'")
    add("unknown_type_id", _patch(base, b.type_at, "<I", 999), "tensor 'blk.0.b.weight'")
    add("unsupported_type_iq2", _patch(base, b.type_at, "<I", 16), "tensor 'blk.0.b.weight'")
    add("offset_past_eof", _patch(base, c.offset_at, "<Q", len(base) // 64 * 64 + 64),
        "tensor 'blk.0.c.weight'")
    add("offset_wraps", _patch(base, c.offset_at, "<Q", 2**64 - 64), "tensor 'blk.0.c.weight'")
    add("misaligned_offset", _patch(base, c.offset_at, "<Q", c.offset + 8), "tensor 'blk.0.c.weight'")
    add("overlapping_tensors", _patch(base, c.offset_at, "<Q", b.offset), "overlaps")
    dup_name = bytearray(base)
    dup_name[c.name_len_at + 8 : c.n_dims_at] = a.name.encode()
    add("duplicate_tensor_name", bytes(dup_name), "tensor 'blk.0.a.weight'")

    # Not GGUF at all.
    rng = np.random.default_rng(1)
    add("random_bytes", rng.integers(0, 256, size=300, dtype=np.uint8).tobytes(), "magic")
    return out


def main() -> None:
    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    base_path = out_dir / "base.gguf"
    write_base(base_path)
    base = base_path.read_bytes()
    for case in cases(base):
        (out_dir / f"{case.name}.gguf").write_bytes(case.data)
    print(f"wrote base.gguf and {len(cases(base))} cases to {out_dir}")


if __name__ == "__main__":
    main()
