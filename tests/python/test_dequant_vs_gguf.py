"""Cross-check of kq's dequantization (kernels/quant.c) against the `gguf`
Python package, an independent implementation of the GGML block formats.

The C kernels are compiled on the fly into a small shared library (the
project's own core library is static) and called through ctypes on:
  * random bytes for every weight type (scale fields kept finite so both
    sides compare numbers, not NaN patterns), and
  * the first rows of real tensors of the default model, when it is present.
Agreement is to float rounding: 1e-6 relative to the block's largest value
(the two sides may associate d*sc*q - dmin*m differently or fuse it).
"""

from __future__ import annotations

import ctypes
import platform
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as T  # noqa: E402
from gguf.quants import dequantize  # noqa: E402

REPO = Path(__file__).resolve().parent.parent.parent
MODEL = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

# type -> (elements per block, bytes per block, byte offsets of fp16 scales)
LAYOUT = {
    T.F32: (1, 4, ()),
    T.F16: (1, 2, ()),
    T.BF16: (1, 2, ()),
    T.Q4_0: (32, 18, (0,)),
    T.Q4_1: (32, 20, (0, 2)),
    T.Q5_0: (32, 22, (0,)),
    T.Q5_1: (32, 24, (0, 2)),
    T.Q8_0: (32, 34, (0,)),
    T.Q4_K: (256, 144, (0, 2)),
    T.Q6_K: (256, 210, (208,)),
}


@pytest.fixture(scope="module")
def kq(tmp_path_factory):
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the AVX2 file needs an x86-64 compiler")
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler")
    out = tmp_path_factory.mktemp("kq")
    objs = []
    # the same objects kernels/meson.build makes: the SIMD files once for
    # AVX2 and once more for AVX512-VNNI (kq_vnni_* names), and the VBMI
    # file, which quant.c references whichever level the CPU has
    avx2 = ["-mavx2", "-mfma", "-mf16c", "-ffp-contract=off"]
    avx512 = avx2 + ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni"]
    vnni = avx512 + ["-DKQ_VNNI=1"]
    vbmi = avx512 + ["-mavx512vbmi"]
    units = [("quant.c", [], ""), ("quant_dequant.c", [], ""), ("quant_scalar.c", [], ""),
             ("quant_q16.c", [], ""), ("quant_avx2.c", avx2, ""),
             ("quant_avx2_q16.c", avx2, ""), ("quant_avx2.c", vnni, "vnni-"),
             ("quant_avx2_q16.c", vnni, "vnni-"), ("quant_avx512.c", vbmi, "vbmi-")]
    for src, flags, tag in units:
        obj = out / (tag + src + ".o")
        subprocess.run([cc, "-std=gnu11", "-O2", "-fPIC", *flags, "-I", str(REPO / "kernels"),
                        "-c", str(REPO / "kernels" / src), "-o", str(obj)], check=True)
        objs.append(str(obj))
    lib = out / "libkq.so"
    subprocess.run([cc, "-shared", "-o", str(lib), *objs, "-lm"], check=True)
    k = ctypes.CDLL(str(lib))
    k.kq_dequantize_row.argtypes = [ctypes.c_uint32, ctypes.c_void_p, ctypes.c_void_p,
                                    ctypes.c_int64]
    k.kq_dequantize_row.restype = ctypes.c_int
    return k


def c_dequant(kq, qtype: int, raw: np.ndarray, n: int) -> np.ndarray:
    raw = np.ascontiguousarray(raw, dtype=np.uint8)
    out = np.empty(n, dtype=np.float32)
    rc = kq.kq_dequantize_row(int(qtype), raw.ctypes.data, out.ctypes.data, n)
    assert rc == 0, f"kq_dequantize_row({qtype}) -> {rc}"
    return out


def assert_close(got: np.ndarray, want: np.ndarray, blk: int, what: str) -> None:
    want = want.astype(np.float32).reshape(-1)
    assert got.shape == want.shape, what
    g, w = got.reshape(-1, blk), want.reshape(-1, blk)
    scale = np.maximum(np.abs(w).max(axis=1, keepdims=True), 1e-30)
    err = np.abs(g - w) / scale
    worst = np.unravel_index(np.argmax(err), err.shape)
    assert err.max() <= 1e-6, (f"{what}: block {worst[0]} elem {worst[1]}: "
                               f"C {g[worst]} gguf {w[worst]}")


@pytest.mark.parametrize("qtype", list(LAYOUT), ids=lambda t: t.name)
def test_random_bytes(kq, qtype):
    blk, bb, scale_offs = LAYOUT[qtype]
    rng = np.random.default_rng(1000 + int(qtype))
    n_blocks = 512 // blk if blk > 1 else 4096
    raw = rng.integers(0, 256, size=(n_blocks, bb), dtype=np.uint8)
    if qtype in (T.F16, T.BF16, T.F32):
        # finite values only: clear the top exponent bit of every element
        hi = bb - 1
        raw[:, hi] &= 0xBF
    for off in scale_offs:  # |scale| < 2, finite
        raw[:, off + 1] &= 0xBF
    n = n_blocks * blk
    got = c_dequant(kq, qtype, raw, n)
    want = dequantize(raw.reshape(-1), qtype)
    assert_close(got, want, blk, qtype.name)


def test_model_tensors(kq):
    if not MODEL.exists():
        pytest.skip("default model not downloaded")
    reader = gguf.GGUFReader(str(MODEL))
    seen = set()
    for t in reader.tensors:
        qtype = T(t.tensor_type)
        if qtype in seen or qtype not in LAYOUT:
            continue
        seen.add(qtype)
        blk, bb, _ = LAYOUT[qtype]
        cols = int(t.shape[0])  # ne[0], contiguous
        row_bytes = cols // blk * bb
        raw = np.asarray(t.data).view(np.uint8).reshape(-1)
        rows = min(8, raw.size // row_bytes)
        chunk = raw[: rows * row_bytes]
        got = c_dequant(kq, qtype, chunk, rows * cols)
        want = dequantize(chunk, qtype)
        assert_close(got, want, blk, f"{t.name} ({qtype.name})")
    # the default model has Q4_1 weights, a Q8_0 embedding and F32 norms
    assert {T.Q4_1, T.Q8_0, T.F32} <= seen, seen
