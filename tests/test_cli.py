"""The command line: conformance report, JSON, reproductions, info."""

from __future__ import annotations

import json

from reprosparse.cli import main


def test_conformance_quick_numpy(tmp_path, capsys):
    out = tmp_path / "report.json"
    code = main(["conformance", "--backend", "numpy", "--quick", "--json", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "0 failed" in text and "sparse_ffn" in text
    report = json.loads(out.read_text())
    assert report["failures"] == []
    assert {r["mode"] for r in report["summary"]} == {"deterministic", "fast"}
    assert all(r["passed"] == r["cases"] for r in report["summary"])
    # numpy's deterministic rows are the reference compared with itself: marked, not counted as passes;
    # so are its fast rows of the runtime ops, which have no fast variant (it runs their reference hooks)
    from reprosparse.conformance import runtime_cases

    marked = {(r["mode"], r["op"] in runtime_cases.OPS) for r in report["summary"] if r["is_reference"]}
    assert marked == {("deterministic", False), ("deterministic", True), ("fast", True)}
    assert report["not_counted_is_the_reference"] > 0 and "is the reference" in text and "not counted" in text


def test_one_case_by_id(capsys):
    assert main(["conformance", "--backend", "numpy", "--mode", "fast", "--case", "sparse_axpy/values/inf"]) == 0
    assert "1 passed, 0 failed" in capsys.readouterr().out


def test_unknown_case_and_backend_are_errors(capsys):
    assert main(["conformance", "--case", "nope/none/none"]) == 2
    assert "no conformance case 'nope/none/none'" in capsys.readouterr().err
    assert main(["conformance", "--backend", "cuda", "--quick"]) == 2
    assert "registered backend (cython, numpy, opencl); got 'cuda'" in capsys.readouterr().err


def test_list_names_every_case(capsys):
    assert main(["conformance", "--list"]) == 0
    ids = capsys.readouterr().out.split()
    assert "sparse_ffn/llama/4096x11008-10%" in ids and "predict/ties/float16" in ids


def test_info(capsys):
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert "flushes subnormals" in text and "numpy" in text and "auto selects" in text
