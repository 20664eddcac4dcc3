"""The command line never crashes: every error a user can cause is one line on stderr and exit 2 or 1.

Exit 2: the command line cannot run as given (option values, paths, REPROSPARSE_* variables), refused
before any work.  Exit 1: the run failed (a corrupt model file, a run stopped short).  130: interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reprosparse import _config, available_backends
from reprosparse.cli import main
from reprosparse.model import make_model, save_model

pytest.importorskip("gguf")  # save_model writes with gguf-py

VOCAB = 260
SHORT_CONTEXT = 20  # make_model calibrates on 16-token prompts, so its context must hold 16


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("cli")
    model = make_model(layers=1, dim=32, ff=256, vocab=VOCAB, heads=4, seed=0)
    save_model(model, d / "m.gguf")
    save_model(dataclasses.replace(model, vocabulary=None), d / "novocab.gguf")
    short = make_model(layers=1, dim=32, ff=256, vocab=VOCAB, heads=4, seed=0, context_length=SHORT_CONTEXT)
    save_model(short, d / "short.gguf")
    (d / "garbage.gguf").write_bytes(b"this is not a model file at all" * 8)
    (d / "empty.gguf").write_bytes(b"")
    (d / "truncated.gguf").write_bytes((d / "m.gguf").read_bytes()[:1000])
    (d / "subdir").mkdir()
    os.mkfifo(d / "fifo")
    names = ["m", "novocab", "short", "garbage", "empty", "truncated"]
    return {
        **{k: str(d / f"{k}.gguf") for k in names},
        "dir": str(d / "subdir"), "fifo": str(d / "fifo"), "missing": str(d / "missing.gguf"),
        "out": str(d / "subdir" / "out.gguf"), "nodir": str(d / "nope" / "x.json"),
    }


@pytest.fixture(autouse=True)
def fresh_settings():
    """REPROSPARSE_* are read once per context; each test reads the environment it sets."""
    token = _config._current.set(None)
    yield
    _config._current.reset(token)


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and "internal error" not in err, err
    assert len(lines) == 1, err
    assert lines[0].startswith("reprosparse") and ": error: " in lines[0], err
    return lines[0]


# (command line with {placeholders} for the files fixture, exit status, text the message must contain)
def unknown(option: str, name: str) -> str:
    """The message for a backend name that is not registered (the project registers these three)."""
    return f"{option} must be auto or the name of a registered backend (cython, numpy, opencl); got {name!r}"


BAD = [
    ([], 2, "COMMAND"),
    (["nope"], 2, "invalid choice"),
    (["info", "--bogus"], 2, "unrecognized arguments: --bogus"),
    (["generate"], 2, "model"),
    (["generate", "{missing}"], 2, "No such file"),
    (["generate", "{dir}"], 2, "is a directory"),
    (["generate", "{fifo}"], 2, "not a regular file"),
    (["generate", "{garbage}"], 1, "garbage.gguf"),
    (["generate", "{empty}"], 1, "empty.gguf"),
    (["generate", "{truncated}"], 1, "truncated.gguf"),
    (["generate", "{m}", "--tokens", "a"], 2, "--tokens: expected comma-separated integers, got 'a'"),
    (["generate", "{m}", "--tokens", ""], 2, "--tokens"),
    (["generate", "{m}", "--tokens", "99999999999999999999999"], 2, f"--tokens: token ids must lie in [0, {VOCAB})"),
    (["generate", "{m}", "--tokens", "-1"], 2, f"[0, {VOCAB})"),
    (["generate", "{m}", "--tokens", ",".join(["1"] * 600)], 2, "context length 512"),
    (["generate", "{m}", "--prompt", "\udcff"], 2, "--prompt: text is not valid Unicode: '\\udcff' at offset 0"),
    (["generate", "{novocab}", "--prompt", "hi"], 2, "no vocabulary"),
    (["generate", "{m}", "-n", "0"], 2, "argument -n: must be >= 1, got 0"),
    (["generate", "{m}", "-n", "x"], 2, "argument -n: expected an integer"),
    (["generate", "{m}", "--threads", "0"], 2, "--threads: must be >= 1"),
    (["generate", "{m}", "--threads", "99999999999"], 2, "--threads: must be at most 256, got 99999999999"),
    (["generate", "{m}", "--temperature", "-1"], 2, "--temperature"),
    (["generate", "{m}", "--temperature", "nan"], 2, "--temperature"),
    (["generate", "{m}", "--seed", "-1"], 2, "--seed"),
    (["generate", "{m}", "--seed", str(2**64)], 2, "--seed"),
    (["generate", "{m}", "--mode", "bogus"], 2, "--mode"),
    (["generate", "{m}", "--backend", "cuda"], 2, unknown("--backend", "cuda")),
    (["generate", "{m}", "--tokens", "1", "--prompt", "a"], 2, "not allowed with"),
    (["audit", "{m}", "--repeats", "0"], 2, "--repeats: must be >= 1, got 0"),
    (["audit", "{m}", "--threads", ""], 2, "--threads"),
    (["audit", "{m}", "--threads", "1,0"], 2, "--threads: must be >= 1, got 0"),
    (["audit", "{m}", "--threads", "1,257"], 2, "--threads: must be at most 256, got 257"),
    (["audit", "{m}", "--modes", "bogus"], 2, "--modes"),
    (["audit", "{m}", "--backends", "nope"], 2, unknown("--backends", "nope")),
    (["audit", "{m}", "--backends", "auto"], 2, "--backends"),
    (["audit", "{m}", "--json", "{nodir}"], 2, "does not exist"),
    (["audit", "{m}", "--json", "{dir}"], 2, "is a directory"),
    (["audit", "{m}", "-n", "600"], 2, "context length 512"),
    (["audit", "{dir}"], 2, "is a directory"),
    (["bench", "--repeats", "-3"], 2, "--repeats: must be >= 1, got -3"),
    (["bench", "--repeats", "0"], 2, "--repeats"),
    (["bench", "--threads", "0"], 2, "--threads"),
    (["bench", "--mode", "bogus"], 2, "--mode"),
    (["bench", "--backend", "nope"], 2, unknown("--backend", "nope")),
    (["bench", "--json", "{nodir}"], 2, "--json"),
    (["bench", "--tokens", "3"], 2, "--tokens applies only with --decode"),
    (["bench", "--no-mmap"], 2, "--no-mmap applies only with --decode"),
    (["bench", "--decode", "{m}", "--tokens", "0"], 2, "--tokens: must be >= 1"),
    (["bench", "--decode", "{m}", "--depth", "0"], 2, "--depth"),
    (["bench", "--decode", "{m}", "--quick"], 2, "--quick"),
    (["bench", "--decode", "{m}", "--tokens", "600"], 2, "context length 512"),
    (["bench", "--decode", "{dir}"], 2, "is a directory"),
    (["bench", "--decode", "{fifo}"], 2, "not a regular file"),
    (["make-model", "{out}", "--heads", "0"], 2, "--heads: must be >= 1, got 0"),
    (["make-model", "{out}", "--dim", "0"], 2, "--dim: must be >= 1, got 0"),
    (["make-model", "{out}", "--layers", "-1"], 2, "--layers: must be >= 1, got -1"),
    (["make-model", "{out}", "--layers", "0"], 2, "--layers: must be >= 1, got 0"),
    (["make-model", "{out}", "--ff", "0"], 2, "--ff"),
    (["make-model", "{out}", "--dim", "30", "--heads", "4"], 2, "--dim 30 is not divisible by --heads 4"),
    (["make-model", "{out}", "--dim", "12", "--heads", "4"], 2, "even width"),
    (["make-model", "{out}", "--heads", "4", "--kv-heads", "3"], 2, "--kv-heads 3"),
    (["make-model", "{out}", "--vocab", "258"], 2, "--vocab must be >= 259"),
    (["make-model", "{out}", "--seed", "-1"], 2, "--seed"),
    (["make-model", "{nodir}"], 2, "does not exist"),
    (["make-model", "{dir}"], 2, "is a directory"),
    (["conformance", "--case", "nope/none/none"], 2, "no conformance case 'nope/none/none'"),
    (["conformance", "--backend", "cuda"], 2, unknown("--backend", "cuda")),
    (["conformance", "--json", "{nodir}"], 2, "--json"),
]


@pytest.mark.parametrize(("argv", "code", "text"), BAD, ids=[" ".join(a) or "(none)" for a, _, _ in BAD])
def test_bad_command_line_is_one_line(files, capsys, argv, code, text):
    assert main([a.format(**files) for a in argv]) == code
    line = _one_error_line(capsys)
    assert text in line, line


BAD_ENV = [
    ({"REPROSPARSE_THREADS": "x"}, ["generate", "{m}"], "REPROSPARSE_THREADS"),
    ({"REPROSPARSE_THREADS": "0"}, ["make-model", "{out}"], "REPROSPARSE_THREADS"),
    ({"REPROSPARSE_MODE": "bogus"}, ["audit", "{m}"], "REPROSPARSE_MODE"),
    ({"REPROSPARSE_MODE": "bogus"}, ["conformance", "--quick"], "REPROSPARSE_MODE"),
    ({"REPROSPARSE_BACKEND": "nope"}, ["generate", "{m}"], "REPROSPARSE_BACKEND must be auto or the name of a"),
]


@pytest.mark.parametrize(("env", "argv", "text"), BAD_ENV)
def test_bad_environment_is_a_usage_error(files, capsys, monkeypatch, env, argv, text):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main([a.format(**files) for a in argv]) == 2
    assert text in _one_error_line(capsys)


@pytest.mark.parametrize("env", [{"REPROSPARSE_THREADS": "x"}, {"REPROSPARSE_MODE": "bogus"}])
def test_info_shows_a_bad_variable_then_fails(capsys, monkeypatch, env):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["info"]) == 2
    out, err = capsys.readouterr()
    (key,) = env
    assert "invalid" in out and key in out and "numpy" in out  # the tables were still printed
    assert err.count("\n") == 1 and key in err and "Traceback" not in err


def test_subprocess_stderr_has_no_traceback(files):
    """The real entry point (python -m), and a FIFO as the model: refused at once, not read forever."""
    runs = [
        (["generate", files["fifo"]], 2, "not a regular file"),
        (["make-model", files["out"], "--heads", "0"], 2, "--heads: must be >= 1"),
        (["generate", files["garbage"]], 1, "garbage.gguf"),
        (["audit", files["m"], "--repeats", "0"], 2, "--repeats"),
    ]
    for argv, code, text in runs:
        done = subprocess.run([sys.executable, "-P", "-m", "reprosparse.cli", *argv], capture_output=True, text=True,
                              timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        assert done.returncode == code, done.stderr
        assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1 and text in done.stderr, done.stderr
        assert done.stderr.count(text) == 1, f"said twice: {done.stderr}"


def test_a_temperature_whose_reciprocal_overflows_is_greedy(files, capsys):
    """1/T overflows float32 for T = 1e-45: the spec's sample rule then takes the argmax (no error)."""
    assert main(["generate", files["m"], "--tokens", "1,2", "-n", "4"]) == 0
    greedy = capsys.readouterr().out.splitlines()[0]
    assert main(["generate", files["m"], "--tokens", "1,2", "-n", "4", "--temperature", "1e-45", "--seed", "7"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == greedy


def test_debug_shows_the_traceback(files):
    from reprosparse.cli import UsageError

    with pytest.raises(UsageError, match=rf"\[0, {VOCAB}\)"):
        main(["--debug", "generate", files["m"], "--tokens", str(VOCAB)])
    with pytest.raises(UsageError, match=rf"\[0, {VOCAB}\)"):  # after the subcommand too
        main(["generate", files["m"], "--tokens", str(VOCAB), "--debug"])


def test_interrupt_is_130_and_one_line(files, capsys, monkeypatch):
    import reprosparse.model

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(reprosparse.model, "generate", interrupted)
    assert main(["generate", files["m"], "--backend", "numpy"]) == 130
    assert "interrupted" in _one_error_line(capsys)


def test_a_bug_is_named_a_bug_in_one_line(files, capsys, monkeypatch):
    import reprosparse.model

    def broken(*args, **kwargs):
        return 1 // 0

    monkeypatch.setattr(reprosparse.model, "generate", broken)
    assert main(["generate", files["m"], "--backend", "numpy"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error" in err and "ZeroDivisionError" in err and "--debug" in err
    assert "Traceback" not in err


def test_generate_prints_what_it_made_before_the_context_length(files, capsys):
    n = 30
    assert main(["generate", files["short"], "--backend", "numpy", "--tokens", "1", "-n", str(n)]) == 1
    out, err = capsys.readouterr()
    # A 1-token prompt: the context holds it and SHORT_CONTEXT - 1 fed-back tokens, and the last
    # token made is never fed back, so SHORT_CONTEXT new tokens are made.
    tokens = out.splitlines()[0].split(",")
    assert len(tokens) == SHORT_CONTEXT and all(0 <= int(t) < VOCAB for t in tokens)
    line = [x for x in err.splitlines() if "error" in x]
    assert len(line) == 1 and f"context length {SHORT_CONTEXT}" in line[0] and f"{SHORT_CONTEXT} of {n}" in line[0]
    assert "Traceback" not in err
    # The same tokens as a run that asks for exactly that many.
    assert main(["generate", files["short"], "--backend", "numpy", "--tokens", "1", "-n", str(SHORT_CONTEXT)]) == 0
    assert capsys.readouterr().out.splitlines()[0].split(",") == tokens


@pytest.mark.parametrize("where", ["{nodir}", "{dir}"])
def test_audit_output_is_checked_before_the_audit_runs(files, capsys, monkeypatch, where):
    import reprosparse.model.audit

    def must_not_run(*args, **kwargs):
        raise AssertionError("the audit ran although its --json path cannot be written")

    monkeypatch.setattr(reprosparse.model.audit, "run_audit", must_not_run)
    assert main(["audit", files["m"], "--json", where.format(**files)]) == 2
    assert "--json" in _one_error_line(capsys)


def test_plot_without_matplotlib_is_refused_before_work(files, capsys, monkeypatch, tmp_path):
    import importlib.util

    import reprosparse.model.audit

    def must_not_run(*args, **kwargs):
        raise AssertionError("the audit ran although --plot cannot be drawn")

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    monkeypatch.setattr(reprosparse.model.audit, "run_audit", must_not_run)
    for argv in (["audit", files["m"]], ["bench", "--quick"]):
        assert main([*argv, "--plot", str(tmp_path / "p.png")]) == 2
        assert "needs matplotlib" in _one_error_line(capsys)


@pytest.fixture
def runtime_spy(monkeypatch):
    import reprosparse.model

    seen: dict[str, object] = {}
    real = reprosparse.model.Runtime

    def spy(model, backend, **kwargs):
        seen.update(backend=backend.name, **kwargs)
        return real(model, backend, **kwargs)

    monkeypatch.setattr(reprosparse.model, "Runtime", spy)
    return seen


def test_generate_honours_the_environment(files, capsys, monkeypatch, runtime_spy):
    monkeypatch.setenv("REPROSPARSE_BACKEND", "numpy")
    monkeypatch.setenv("REPROSPARSE_MODE", "fast")
    monkeypatch.setenv("REPROSPARSE_THREADS", "3")
    assert main(["generate", files["m"], "-n", "2"]) == 0
    assert runtime_spy == {"backend": "numpy", "mode": "fast", "threads": 3, "ffn": "sparse"}


def test_generate_options_override_the_environment(files, capsys, monkeypatch, runtime_spy):
    monkeypatch.setenv("REPROSPARSE_BACKEND", "cython")  # valid, but the option wins
    monkeypatch.setenv("REPROSPARSE_MODE", "fast")
    monkeypatch.setenv("REPROSPARSE_THREADS", "3")
    argv = ["generate", files["m"], "-n", "2", "--backend", "numpy", "--mode", "deterministic", "--threads", "2"]
    assert main(argv) == 0
    assert runtime_spy == {"backend": "numpy", "mode": "deterministic", "threads": 2, "ffn": "sparse"}


NO_MMAP_RUNS = [
    ["generate", "-n", "2"],
    ["audit", "-n", "2", "--repeats", "1", "--backends", "numpy", "--threads", "1"],
    ["bench", "--tokens", "1", "--prefill", "2", "--backend", "numpy", "--decode"],
]


@pytest.mark.parametrize("command", NO_MMAP_RUNS)
def test_no_mmap_runs_the_same_model_read_into_memory(files, capsys, monkeypatch, command):
    import reprosparse.model

    loads: list[bool] = []
    real = reprosparse.model.load_model

    def spy(path, mmap=True):
        loads.append(mmap)
        return real(path, mmap=mmap)

    monkeypatch.setattr(reprosparse.model, "load_model", spy)
    assert main([*command, files["m"], "--no-mmap"]) == 0
    assert loads == [False]


def test_no_mmap_without_the_memory_says_how_to_map_instead(files, capsys, monkeypatch):
    import reprosparse.model

    def no_room(path, mmap=True):
        raise MemoryError("Unable to allocate 13.5 GiB")

    monkeypatch.setattr(reprosparse.model, "load_model", no_room)
    assert main(["generate", files["m"], "-n", "2", "--no-mmap"]) == 1
    err = capsys.readouterr().err
    assert "--no-mmap" in err and "without --no-mmap the file is mapped" in err and "Traceback" not in err


def test_bench_decode_honours_threads(files, capsys, monkeypatch):
    threaded = [s.name for s in available_backends().values() if s.available and not s.refused]
    threaded = [n for n in threaded if __import__("reprosparse").get_backend(n).has_threads]
    if not threaded:
        pytest.skip("no threaded backend available")
    import reprosparse.model.bench

    calls: list[object] = []
    real = reprosparse.model.bench.decode_speed

    def spy(model, backend, modes, ffns, threads, *args, **kwargs):
        calls.append((backend, threads))
        return real(model, backend, modes, ffns, threads, *args, **kwargs)

    monkeypatch.setattr(reprosparse.model.bench, "decode_speed", spy)
    argv = ["bench", "--decode", files["m"], "--backend", f"{threaded[0]},numpy", "--threads", "1,2", "--tokens", "1"]
    assert main(argv) == 0
    assert calls == [(threaded[0], 1), (threaded[0], 2), ("numpy", None)]  # numpy has no threads: once
    out = capsys.readouterr().out
    assert "threads" in out


def test_bench_decode_reports_rates_and_the_stream_of_each_row(files, capsys, tmp_path):
    out = tmp_path / "decode.json"
    assert main(["bench", "--decode", files["m"], "--backend", "numpy", "--tokens", "3", "--json", str(out)]) == 0
    assert "mean" in capsys.readouterr().out  # the table's "mean tokens/s" column, wrapped at 80 columns
    for r in json.loads(out.read_text())["results"]:
        # one over the median step, and steps over their total time (PowerInfer's "eval time" rate)
        assert r["tokens_per_s"] > 0 and r["mean_tokens_per_s"] > 0
        assert r["stream_gbps"] > 0  # read once per round of steps, side by side with them


def test_make_model_writes_nothing_for_bad_shapes(files, capsys):
    out = Path(files["out"])
    assert main(["make-model", str(out), "--layers", "0"]) == 2
    assert not out.exists()
