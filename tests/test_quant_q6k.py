"""Q6_K weights (spec §13): exact dequantization against gguf-py and against ggml's own loop,
every op on every backend against the reference on the oracle's float32 matrix (threads 1/2/3,
odd row counts, both modes), argument checks, the quantizer, model files and the audit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bad_inputs import mangled
from quant_ops import available_backends, bits, check_every_op

import reprosparse as rs
from reprosparse import QuantizedMatrix, conformance, reference
from reprosparse.conformance.quant_cases import QUANT_KINDS, quantized
from reprosparse.reference.quant import pack_q6_k, take_columns

gguf = pytest.importorskip("gguf")
from gguf.quants import dequantize  # noqa: E402

Q6_K = gguf.GGMLQuantizationType.Q6_K


def _oracle(q: QuantizedMatrix) -> np.ndarray:
    with np.errstate(all="ignore"):
        return dequantize(np.asarray(q.data), Q6_K).astype(np.float32)


def _ggml_loop(block: bytes) -> list[float]:
    """ggml's dequantize_row_q6_K for one 210-byte block, transcribed loop for loop, in float32."""
    f32 = np.float32
    ql, qh, sc = block[:128], block[128:192], np.frombuffer(block[192:208], np.int8)
    d = f32(np.frombuffer(block[208:210], "<f2")[0])
    y = [f32(0)] * 256
    with np.errstate(all="ignore"):
        for half in range(2):
            o, lo, hi, s = 128 * half, 64 * half, 32 * half, 8 * half
            for j in range(32):
                i = j // 16
                q1 = ((ql[lo + j] & 0xF) | ((qh[hi + j] >> 0 & 3) << 4)) - 32
                q2 = ((ql[lo + j + 32] & 0xF) | ((qh[hi + j] >> 2 & 3) << 4)) - 32
                q3 = ((ql[lo + j] >> 4) | ((qh[hi + j] >> 4 & 3) << 4)) - 32
                q4 = ((ql[lo + j + 32] >> 4) | ((qh[hi + j] >> 6 & 3) << 4)) - 32
                y[o + j] = d * f32(sc[s + i]) * f32(q1)
                y[o + j + 32] = d * f32(sc[s + i + 2]) * f32(q2)
                y[o + j + 64] = d * f32(sc[s + i + 4]) * f32(q3)
                y[o + j + 96] = d * f32(sc[s + i + 6]) * f32(q4)
    return y


@pytest.mark.parametrize("kind", QUANT_KINDS)
def test_dequantize_matches_gguf_on_every_block_pattern(kind: str) -> None:
    """Raw blocks with subnormal, zero, Inf and NaN scales, every 6-bit code and int8 sub-scale."""
    q = quantized(np.random.default_rng(2), (33, 768), kind, "q6_k")
    assert np.array_equal(bits(q.dequantize()), bits(_oracle(q)))


def test_dequantize_matches_ggmls_loop_and_random_bytes() -> None:
    rng = np.random.default_rng(3)
    raw = rng.integers(0, 256, (3, 2 * 210), dtype=np.uint8)
    raw[1, 208:210] = np.array([np.inf], "<f2").view(np.uint8)
    raw[2, 208:210] = np.array([-0.0], "<f2").view(np.uint8)
    q = QuantizedMatrix(raw, (3, 512), "q6_k")
    want = np.array([_ggml_loop(bytes(raw[r, b * 210:(b + 1) * 210])) for r in range(3) for b in range(2)],
                    np.float32).reshape(3, 512)
    assert np.array_equal(bits(q.dequantize()), bits(want))
    assert np.array_equal(bits(q.dequantize()), bits(_oracle(q)))


def test_special_scales_follow_ieee() -> None:
    """0 * Inf = NaN, Inf keeps the product's sign, NaN d poisons the block, -0.0 where a factor is negative."""
    q = np.full((1, 1, 256), 32, np.uint8)  # every code 0
    q[0, 0, 1], q[0, 0, 16], q[0, 0, 17] = 33, 31, 33  # +1 (scale sc[0]), -1 and +1 (scale sc[1])
    sc = np.zeros((1, 1, 16), np.int8)
    sc[0, 0, 0], sc[0, 0, 1] = -128, 5
    for d, want in (
        (np.inf, {0: np.nan, 1: -np.inf, 16: -np.inf, 17: np.inf, 32: np.nan}),
        (np.nan, {0: np.nan, 1: np.nan, 32: np.nan}),
        (1.0, {0: -0.0, 1: -128.0, 16: -5.0, 17: 5.0, 32: 0.0}),
        (-0.0, {0: 0.0, 1: 0.0, 16: 0.0, 17: -0.0, 32: -0.0}),
    ):
        raw = pack_q6_k(q, sc, np.array([[d]], np.float16))
        got = QuantizedMatrix(raw.reshape(1, 210), (1, 256), "q6_k").dequantize()[0]
        assert np.array_equal(bits(got), bits(_oracle(QuantizedMatrix(raw.reshape(1, 210), (1, 256), "q6_k"))[0]))
        for j, v in want.items():
            assert bits(got[j:j + 1])[0] == bits(np.array([v], np.float32))[0], (d, j)


def test_shape_checks_name_the_block_of_256() -> None:
    with pytest.raises(ValueError, match=r"d a multiple of 256 for q6_k"):
        QuantizedMatrix(np.zeros(2 * 210, np.uint8), (2, 128), "q6_k")
    q = quantized(np.random.default_rng(4), (5, 768), "normal", "q6_k")
    with pytest.raises(ValueError, match="256-column blocks"):
        take_columns(q, 0, 300)
    part = take_columns(q, 256, 768)
    assert part.shape == (5, 512) and np.array_equal(bits(part.dequantize()), bits(q.dequantize()[:, 256:]))



@pytest.mark.parametrize("name", ["numpy", "cython", "opencl"])
def test_bad_q6_k_arguments_raise_naming_them(name: str) -> None:
    if not rs.available_backends()[name].available:
        pytest.skip(f"{name} unavailable")
    backend = rs.get_backend(name)
    q = quantized(np.random.default_rng(5), (7, 256), "normal", "q6_k")
    with pytest.raises(ValueError, match=r"W \(q6_k\) must have a multiple of 256 columns"):
        backend.matvec(mangled(q, shape=(7, 128)), np.zeros(128, np.float32))
    with pytest.raises(ValueError, match=r"W\.data must have shape \(7, 420\)"):
        backend.matvec(mangled(q, shape=(7, 512)), np.zeros(512, np.float32))
    with pytest.raises(ValueError, match=r"fc2 \(q6_k\) must have a multiple of 256 columns"):
        backend.predict(np.zeros(256, np.float32), q, mangled(q, shape=(7, 32)))


def test_cython_kernels_recheck_q6_k_bytes_when_called_directly() -> None:
    kernels = pytest.importorskip("reprosparse.backends._cython_kernels")
    q = quantized(np.random.default_rng(6), (8, 256), "normal", "q6_k")
    x = np.zeros((1, 512), np.float32)
    for bad in (mangled(q, shape=(8, 512)), mangled(q, shape=(9, 256)), mangled(q, shape=(8, 32))):
        with pytest.raises(ValueError, match="do not match its type and shape"):
            kernels.lane_dot_rows(bad, None, x[:, : bad.shape[1]], False, 1, "scalar")


@pytest.mark.parametrize("name", available_backends())
def test_every_op_equals_the_reference_on_gguf_dequantized_weights(name: str) -> None:
    """The oracle's float32 matrix (not our dequantizer) fed to the reference gives each backend's bits
    at 1, 2 and 3 threads, with odd row counts and column counts over two sparse_axpy tiles."""
    backend = rs.get_backend(name)
    rng = np.random.default_rng(7)
    n, d, d_out, r = 777, 512, 2304, 256
    shapes = {"gate": (n, d), "up": (n, d), "down_t": (n, d_out), "fc1": (r, d), "fc2": (n, r)}
    q = {k: quantized(rng, s, "normal", "q6_k") for k, s in shapes.items()}
    f = {k: _oracle(v) for k, v in q.items()}
    check_every_op(backend, q, f, "q6_k", rng, t=3, threads=(1, 2, 3) if backend.has_threads else (None,))


@pytest.mark.parametrize("name", available_backends())
def test_fast_mode_stays_within_the_bound_on_q6_k_cases(name: str) -> None:
    """Fast mode on every op's d=768 Q6_K case (threads swept by the runner), and deterministic bits."""
    backend = rs.get_backend(name)
    for op in ("matvec", "sparse_matvec", "sparse_axpy", "predict", "sparse_ffn", "dense_ffn"):
        exp = conformance.Expected.of(conformance.find(f"{op}/q6_k/d=768"))
        for mode in ("fast", "deterministic"):
            results = list(conformance.check_case(backend, mode, exp))
            failed = [f"{r.check}: {r.detail}" for r in results if not r.passed]
            assert results and not failed, (op, mode, failed)


def test_quantizer_round_trips_and_its_bytes_are_gguf_q6_k() -> None:
    from reprosparse.model.quantize import quantize

    rng = np.random.default_rng(8)
    # magnitudes whose d (about max|w| / 4096) is a normal float16; smaller ones are measured below
    w = (rng.standard_normal((37, 512)) * np.exp2(rng.integers(0, 8, (37, 1)))).astype(np.float32)
    w[3] = 0.0
    w[4, :256] = 0.0
    q = quantize(w, "q6_k")
    assert q.type == "q6_k" and q.shape == w.shape
    got = q.dequantize()
    assert np.array_equal(bits(got), bits(_oracle(q)))  # gguf reads our bytes as we do
    assert not got[3].any() and not got[4, :256].any()
    # each weight within about one step (its 16-weight run's largest magnitude / 32: 6-bit codes, the
    # largest +31 when that magnitude is negative), plus 32 times the error of its run's int8 scale
    # (half of d = the block's largest magnitude / 4096)
    err = np.abs(got - w).reshape(37, 32, 16).max(axis=2)
    peak = np.abs(w).reshape(37, 32, 16).max(axis=2)
    block_peak = np.abs(w).reshape(37, 2, 256).max(axis=2).repeat(16, axis=1)
    assert np.all(err <= 1.01 * peak / 32 + 32 * block_peak / 8192)
    assert np.sqrt(np.mean((got - w) ** 2)) < 0.02 * np.sqrt(np.mean(w**2))
    small = (rng.standard_normal((64, 256)) * 0.02).astype(np.float32)  # an LLM's scale: subnormal d
    back = quantize(small, "q6_k").dequantize()
    assert np.sqrt(np.mean((back - small) ** 2)) < 0.02 * np.sqrt(np.mean(small**2))
    with pytest.raises(ValueError, match="multiple of 256"):
        quantize(w[:, :128], "q6_k")


def test_model_file_maps_a_q6_k_head_and_writes_it_back(tmp_path: Path) -> None:
    """make_model q4_0 at dim 256: output.weight is Q6_K (PowerInfer's), loaded as a memmap view."""
    from reprosparse.model import load_model, make_model, save_model

    path = tmp_path / "m.gguf"
    model = make_model(layers=1, dim=256, ff=256, vocab=300, heads=4, seed=3, dtype="q4_0")
    save_model(model, path, "GGUF")
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(path).tensors}
    assert types["output.weight"] == "Q6_K" and types["token_embd.weight"] == "Q4_0"
    loaded = load_model(path)
    head = loaded.output
    assert isinstance(head, QuantizedMatrix) and head.type == "q6_k" and head.shape == (300, 256)
    assert isinstance(head.data, np.memmap) and not head.data.flags.writeable
    assert np.array_equal(np.asarray(head.data), np.asarray(model.output.data))
    again = tmp_path / "again.gguf"
    save_model(loaded, again, "GGUF")
    assert load_model(again).output.data.tobytes() == head.data.tobytes()


def test_audit_of_a_q4_0_model_with_a_q6_k_head_gives_one_output(tmp_path: Path, capsys) -> None:
    """numpy, cython and (where it loads) opencl run the Q6_K head and give one output."""
    from reprosparse.cli import main

    path = tmp_path / "q4.gguf"
    assert main(["make-model", str(path), "--type", "q4_0", "--layers", "1", "--dim", "256", "--ff", "256",
                 "--vocab", "300"]) == 0
    from reprosparse.model import load_model

    assert load_model(path).output.type == "q6_k"  # PowerInfer's magic: gguf-py's reader refuses it
    names = [n for n in ("numpy", "cython", "opencl") if rs.available_backends()[n].available]
    assert main(["audit", str(path), "--backends", ",".join(names), "--modes", "deterministic", "-n", "4",
                 "--tokens", "1,2,3"]) == 0
    out = capsys.readouterr().out
    assert "identical" in out and "left out" not in out, out  # every backend ran the Q6_K head


def test_golden_q6_k_vectors_match_gguf_dequantization_and_the_float_reference() -> None:
    """The committed Q6_K hashes, recomputed from gguf-py's float32 matrices: not our dequantizer's say-so."""
    from reprosparse.conformance import golden

    entries = [e for e in golden.load() if any(isinstance(v, QuantizedMatrix) and v.type == "q6_k"
                                               for v in e["inputs"].values())]
    assert len(entries) >= 6 and {e["op"] for e in entries} >= {"matvec", "sparse_axpy", "predict", "sparse_ffn"}
    for e in entries:
        inputs = {k: _oracle(v) if isinstance(v, QuantizedMatrix) else v for k, v in e["inputs"].items()}
        with np.errstate(all="ignore"):
            out = getattr(reference, e["op"])(**inputs)
        assert golden.digest(out) == e["sha256"], e["id"]
