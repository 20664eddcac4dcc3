"""Quantized weights (spec §13): exact dequantization against gguf-py, argument checks, every
backend against the reference on gguf-py's own float32 matrix, model files and the audit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bad_inputs import mangled
from quant_ops import available_backends, bits, check_every_op

import reprosparse as rs
from reprosparse import QuantizedMatrix, reference
from reprosparse.conformance.quant_cases import QUANT_KINDS, quantized
from reprosparse.reference.quant import row_bytes

gguf = pytest.importorskip("gguf")
from gguf.quants import dequantize, quantize  # noqa: E402

GGML = {"q8_0": gguf.GGMLQuantizationType.Q8_0, "q4_0": gguf.GGMLQuantizationType.Q4_0}
TYPES = tuple(GGML)


@pytest.mark.parametrize("qtype", TYPES)
def test_dequantize_matches_gguf_on_quantized_floats(qtype: str) -> None:
    rng = np.random.default_rng(1)
    w = (rng.standard_normal((37, 256)) * np.exp2(rng.integers(-20, 10, (37, 1)))).astype(np.float32)
    raw = quantize(w, GGML[qtype])
    q = QuantizedMatrix(raw, w.shape, qtype)
    assert np.array_equal(q.dequantize().view(np.uint32), dequantize(raw, GGML[qtype]).view(np.uint32))


@pytest.mark.parametrize("qtype", TYPES)
@pytest.mark.parametrize("kind", QUANT_KINDS)
def test_dequantize_matches_gguf_on_every_block_pattern(qtype: str, kind: str) -> None:
    """Raw blocks with subnormal, zero, Inf and NaN scales and every quant value."""
    q = quantized(np.random.default_rng(2), (64, 128), kind, qtype)
    with np.errstate(all="ignore"):
        want = dequantize(np.asarray(q.data), GGML[qtype])
    assert np.array_equal(bits(q.dequantize()), bits(want))


@pytest.mark.parametrize("qtype", TYPES)
def test_rows_index_like_an_array_and_bytes_are_read_only(qtype: str) -> None:
    q = quantized(np.random.default_rng(3), (20, 64), "normal", qtype)
    full = q.dequantize()
    rows = np.array([3, 0, 19], np.int32)
    for index in (5, slice(2, 9), rows, np.arange(20) % 2 == 0):
        assert np.array_equal(bits(q[index]), bits(full[index]))
    with pytest.raises(ValueError, match="read-only"):
        q.data[0, 0] = 1


@pytest.mark.parametrize("name", available_backends())
@pytest.mark.parametrize("qtype", TYPES)
def test_every_op_equals_the_reference_on_gguf_dequantized_weights(name: str, qtype: str) -> None:
    """The oracle's float32 matrix (not our dequantizer) fed to the reference gives each backend's bits."""
    rng = np.random.default_rng(4)
    n, d, d_out = 600, 96, 64
    mats = {k: rng.standard_normal(s).astype(np.float32)
            for k, s in {"gate": (n, d), "up": (n, d), "down_t": (n, d_out), "fc1": (32, d), "fc2": (n, 32)}.items()}
    raw = {k: quantize(v, GGML[qtype]) for k, v in mats.items()}
    q = {k: QuantizedMatrix(raw[k], mats[k].shape, qtype) for k in mats}
    f = {k: dequantize(raw[k], GGML[qtype]) for k in mats}
    check_every_op(rs.get_backend(name), q, f, qtype, rng, t=3)



@pytest.mark.parametrize("name", ["numpy", "cython", "opencl"])
def test_bad_quantized_arguments_raise_naming_them_before_native_code(name: str) -> None:
    if not rs.available_backends()[name].available:
        pytest.skip(f"{name} unavailable")
    backend = rs.get_backend(name)
    q = quantized(np.random.default_rng(5), (40, 64), "normal", "q4_0")
    x = np.zeros(64, np.float32)
    cases = [
        (mangled(q, shape=(40, 128)), ValueError, r"W\.data must have shape \(40, 72\)"),
        (mangled(q, shape=(40, 48)), ValueError, r"W \(q4_0\) must have a multiple of 32 columns"),
        (mangled(q, type="q8_0"), ValueError, r"W\.data must have shape \(40, 68\)"),
        (mangled(q, type="q5_0"), ValueError, r"W has unknown quantization type 'q5_0'"),
        (mangled(q, data=q.data.view(np.int8)), TypeError, r"W\.data must have dtype uint8"),
        (mangled(q, data=[1, 2]), TypeError, r"W\.data must be a numpy\.ndarray"),
        (mangled(q, data=np.asfortranarray(q.data)), ValueError, r"W\.data must be C-contiguous"),
    ]
    for bad, error, message in cases:
        with pytest.raises(error, match=message):
            backend.matvec(bad, np.zeros(bad.shape[1], np.float32))
    with pytest.raises(ValueError, match=r"x must have 64 columns"):
        backend.matvec(q, np.zeros(32, np.float32))
    with pytest.raises(ValueError, match=r"d a multiple of 32"):
        QuantizedMatrix(np.zeros(40 * 18, np.uint8), (40, 48), "q4_0")
    with pytest.raises(ValueError, match=r"must hold 720 bytes"):
        QuantizedMatrix(np.zeros(10, np.uint8), (40, 32), "q4_0")
    assert np.array_equal(backend.matvec(q, x), reference.matvec(q.dequantize(), x))


def test_cython_kernels_recheck_quantized_bytes_when_called_directly() -> None:
    """The extension's own entry points refuse a QuantizedMatrix whose bytes do not fit: no bad read."""
    kernels = pytest.importorskip("reprosparse.backends._cython_kernels")
    q = quantized(np.random.default_rng(6), (8, 64), "normal", "q8_0")
    x = np.zeros((1, 128), np.float32)
    for bad in (mangled(q, shape=(8, 128)), mangled(q, shape=(9, 64)), mangled(q, shape=(8, 48))):
        with pytest.raises(ValueError, match="do not match its type and shape"):
            kernels.lane_dot_rows(bad, None, x[:, : bad.shape[1]], False, 1, "scalar")
    assert row_bytes("q8_0", 64) == q.data.shape[1]


@pytest.mark.parametrize("qtype", TYPES)
def test_make_model_writes_powerinfers_tensor_types_and_loads_them_mapped(qtype: str, tmp_path: Path) -> None:
    from reprosparse.model import load_model, make_model, save_model

    path = tmp_path / "m.gguf"
    save_model(make_model(layers=1, dim=64, ff=256, vocab=300, heads=4, seed=3, dtype=qtype), path, "GGUF")
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(path).tensors}
    assert types.pop("output.weight") == "Q8_0"  # PowerInfer's Q6_K for q4_0 files is not supported
    norms = {k: types.pop(k) for k in [k for k in types if k.endswith("norm.weight")]}
    assert set(norms.values()) == {"F32"}
    assert set(types.values()) == {qtype.upper()}  # attention, FFN, predictor and token_embd
    model = load_model(path)
    layer = model.layers[0]
    assert layer.fc1.shape == (64, 64) and layer.fc2.shape == (256, 64)  # the rank 33 padded to 64
    for w in (layer.gate, layer.fc2, model.token_embd):
        assert isinstance(w, QuantizedMatrix) and isinstance(w.data, np.memmap) and not w.data.flags.writeable


def test_audit_of_a_q4_0_model_gives_one_output_in_deterministic_mode(tmp_path: Path, capsys) -> None:
    from reprosparse.cli import main

    path = tmp_path / "q4.gguf"
    assert main(["make-model", str(path), "--type", "q4_0", "--layers", "1", "--ff", "256", "--vocab", "300"]) == 0
    refusing = [n for n in available_backends() if "q4_0" not in rs.get_backend(n).weight_types]
    assert main(["audit", str(path), "--modes", "deterministic", "-n", "4", "--tokens", "1,2,3"]) == 0
    out = capsys.readouterr().out
    assert "identical" in out
    ran = out.split("backends ", 1)[1].split("\n", 1)[0].split(", ")  # "audit: ... backends a, b, c"
    assert sorted(ran) == sorted(n for n in available_backends() if n not in refusing)
    assert {"numpy", "cython", "opencl"} & set(available_backends()) <= set(ran), "quantized kernels on every built-in"
    for name in refusing:  # left out, saying why, not failed and not silently run on a float32 copy
        assert f"left out {name}: the {name} backend does not take" in out


def test_conformance_reports_a_refused_weight_type_apart_from_passes() -> None:
    """A backend that does not take q4_0 is neither passed nor failed on a q4_0 case: it is 'refused'."""
    from reprosparse import conformance
    from reprosparse.backends.numpy_backend import NumpyBackend

    class FloatOnly(NumpyBackend):
        name = "float-only"
        weight_types = ("float32", "float16")

    exp = conformance.Expected.of(conformance.find("matvec/q4_0/normal"))
    results = list(conformance.check_case(FloatOnly(), "deterministic", exp))
    assert [r.check for r in results] == [conformance.REFUSES_WEIGHTS] and "does not take q4_0" in results[0].detail
    (row,) = conformance.summarise(results)
    assert row.passed_text == "refuses the weights" and not row.is_reference
    assert conformance.independent_passes(results) == 0 and conformance.not_independent(results) == 0
