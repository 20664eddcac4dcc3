"""Which layout may run each (mode, weight type) on a device: self-tested, crash-isolated, cached.

A driver can miscompile (PoCL 3.0 on LLVM 14 returned wrong values and
aborted the process on AMD Zen 4) while reporting success, so no kernel
variant runs for a user until it has passed selftest.py's battery on that
very device and driver.  The first build and self-test of a combination run
in a child process: a driver that aborts or crashes there kills only the
child, and the combination is refused with the signal and the driver's last
message.  Verdicts are cached on disk, keyed on everything that could change
them (device, driver, kernel source, self-test, build options, injected
faults), so later processes pay a file read.

Cache folder: REPROSPARSE_CACHE_DIR, else $XDG_CACHE_HOME/reprosparse, else
~/.cache/reprosparse; one JSON file per verdict under opencl-selftest/.

REPROSPARSE_OPENCL_FAULT injects faults into the self-test so the refusal
paths are tested on every machine: a comma-separated list of "wrong-bit"
(the self-test sees one wrong bit in every result) or "crash" (the child
aborts as a crashing compiler would), each optionally followed by
":word" filters (a mode, a layout or a weight type) that must all match,
e.g. "wrong-bit:vector8", "crash:fast:float16" or "wrong-bit:q4_0".  The runtime ops'
kernels are one more job, RUNTIME_JOB (runtime_selftest.py), selected by
the word "runtime".

The float types are self-tested at load and decide whether a mode runs at
all (Plan.refuses).  A quantized type is self-tested when weights of that
type first reach the backend (most runs use none: load stays as fast as
before), and one that fails is refused alone (Plan.refuses_type), so a
driver that misreads Q4_0 blocks still runs float weights.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path

from reprosparse._config import MODES

from .._base import BackendUnavailable
from .programs import LAYOUTS, TOKEN_TILES, WEIGHT_TYPES, Variant, source_hash

CACHE_ENV = "REPROSPARSE_CACHE_DIR"
FAULT_ENV = "REPROSPARSE_OPENCL_FAULT"
FAULTS = ("wrong-bit", "crash")
#: Weight types a mode needs to run at all; the quantized ones are self-tested and refused one by one.
FLOAT_TYPES = ("float32", "float16")
#: A child that takes longer is stopped; its verdict is not cached (the machine may just be busy).
CHILD_TIMEOUT_S = 600
#: Marks the child's protocol lines on stdout, which a driver may also write to.
MARK = "reprosparse-selftest "

log = logging.getLogger("reprosparse")

Job = tuple[str, str, str]  # (mode, layout, weight type)
#: The job of the runtime ops' kernels: one program for both modes and every weight type.
RUNTIME_JOB: Job = ("runtime", "runtime", "runtime")


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""  # why not, when not ok
    cache: bool = True  # False for verdicts that say nothing about the driver (a time-out)


@dataclass(frozen=True)
class Plan:
    """The layout each (mode, weight type) runs with, or why none may."""

    layouts: Mapping[tuple[str, str], str]
    refused: Mapping[tuple[str, str], str] = field(default_factory=dict)
    provenance: str = "not self-tested"
    #: Why the runtime ops' kernels may not run (they then run the reference), or None.
    runtime: str | None = "not self-tested"

    def layout(self, mode: str, wtype: str) -> str | None:
        """The layout for `mode` with weights of type `wtype` (programs.WEIGHT_TYPES), or None."""
        return self.layouts.get((mode, wtype))

    def why(self, mode: str, wtype: str) -> str:
        return self.refused.get((mode, wtype), "not self-tested")

    def refuses(self, mode: str) -> str | None:
        """Why `mode` cannot run with some float weight type, or None when it runs with both."""
        reasons = [(wt, self.why(mode, wt)) for wt in FLOAT_TYPES if (mode, wt) not in self.layouts]
        return _by_reason(reasons, "weights") or None

    def refuses_type(self, wtype: str) -> str | None:
        """Why weights of type `wtype` are refused, or None.  Only a failure of its own counts: in a
        mode that runs at all (a mode refused as a whole is refused for every type already)."""
        failed = [(mode, self.why(mode, wtype)) for mode in MODES
                  if self.refuses(mode) is None and (mode, wtype) not in self.layouts]
        return _by_reason(failed, "mode") or None

    def tested(self, wtype: str) -> bool:
        """Whether `wtype` has a verdict in some mode (passed or refused)."""
        return any((mode, wtype) in self.layouts or (mode, wtype) in self.refused for mode in MODES)

    def describe(self, mode: str) -> str:
        """One line for `reprosparse info`: verified (and with which layout), or the refusal."""
        parts = []
        for wt in WEIGHT_TYPES:
            layout = self.layouts.get((mode, wt))
            if layout:
                parts.append(f"{wt} verified ({layout} layout)")
            elif self.tested(wt):
                parts.append(f"{wt} REFUSED: {self.why(mode, wt)}")
            else:
                parts.append(f"{wt} self-tested when first used")
        return "; ".join(parts)

    def merged(self, other: Plan) -> Plan:
        """This plan with `other`'s verdicts (for other weight types) added."""
        return dataclasses.replace(self, layouts={**self.layouts, **other.layouts},
                                   refused={**self.refused, **other.refused},
                                   provenance=f"{self.provenance}; {other.provenance}")


def cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "reprosparse"
    )
    return Path(root) / "opencl-selftest"


def parse_faults(spec: str | None) -> list[tuple[str, frozenset[str]]]:
    """REPROSPARSE_OPENCL_FAULT as (fault, filter words); ValueError naming a bad entry."""
    known = set(MODES) | set(LAYOUTS) | set(WEIGHT_TYPES) | set(RUNTIME_JOB)
    faults = []
    for entry in filter(None, (e.strip() for e in (spec or "").split(","))):
        kind, *words = entry.split(":")
        unknown = set(words) - known
        if kind not in FAULTS or unknown:
            raise ValueError(
                f"{FAULT_ENV}={spec!r}: {entry!r} is not one of {FAULTS} followed by ':' filters "
                f"from {sorted(known)}"
            )
        faults.append((kind, frozenset(words)))
    return faults


def fault_for(job: Job, faults: Iterable[tuple[str, frozenset[str]]]) -> str | None:
    """The first injected fault whose filters all match the job, or None."""
    for kind, words in faults:
        if words <= set(job):
            return kind
    return None


def device_identity(device: object) -> dict[str, str]:
    """What names a device and its driver; a change of any of it re-runs the self-test."""
    platform = device.platform  # type: ignore[attr-defined]
    return {
        "platform": platform.name.strip(), "platform_version": platform.version.strip(),
        "device": device.name.strip(), "device_version": device.version.strip(),  # type: ignore[attr-defined]
        "driver": device.driver_version.strip(), "vendor": device.vendor.strip(),  # type: ignore[attr-defined]
    }


@functools.cache
def _selftest_hash() -> str:
    return hashlib.sha256(resources.files(__package__).joinpath("selftest.py").read_bytes()).hexdigest()


def _key(identity: Mapping[str, str], job: Job, faults: str) -> dict[str, object]:
    mode, layout, wtype = job
    return {
        **identity,
        "reprosparse": metadata.version("reprosparse"),
        "source": source_hash(),
        "selftest": _selftest_hash(),
        "job": list(job),
        "options": [list(Variant(mode, layout, wtype, n).options()) for n in TOKEN_TILES],
        "faults": faults,
    }


def _path(key: Mapping[str, object]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return cache_dir() / f"{digest[:32]}.json"


def _cached(key: Mapping[str, object]) -> Verdict | None:
    try:
        stored = json.loads(_path(key).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or stored.get("key") != key or not isinstance(stored.get("ok"), bool):
        return None
    return Verdict(stored["ok"], str(stored.get("reason", "")))


def _store(key: Mapping[str, object], verdict: Verdict) -> None:
    """Writes the verdict atomically; a cache that cannot be written only costs a re-test."""
    path = _path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as f:
            json.dump({"key": key, "ok": verdict.ok, "reason": verdict.reason}, f, indent=1)
        os.replace(f.name, path)
    except OSError as exc:
        log.warning("reprosparse: cannot cache the OpenCL self-test verdict in %s: %s", path.parent, exc)


def _last_words(stderr: str) -> str:
    """The driver's last message: the last two non-empty lines of the child's stderr."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    text = " / ".join(lines[-2:])
    return text[:400] or "(nothing)"


def _death(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit status {returncode}"


def run_children(where: tuple[int, int], device_name: str, jobs: Sequence[Job]) -> dict[Job, Verdict]:
    """Self-tests `jobs` in child processes, one after another, until each has a verdict."""
    verdicts: dict[Job, Verdict] = {}
    remaining = list(jobs)
    while remaining:
        request = json.dumps({"platform": where[0], "device": where[1], "device_name": device_name,
                              "jobs": remaining})
        started: list[Job] = []
        try:
            # -P: a folder named reprosparse in the cwd must not shadow the package; -W ignore: the
            # stderr tail is the driver's last words, not pyopencl's warning that the compiler spoke.
            proc = subprocess.run(
                [sys.executable, "-P", "-W", "ignore", "-m", "reprosparse.backends.opencl.selftest"], input=request,
                capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False,
            )
            stdout, stderr, returncode = proc.stdout, proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as exc:
            stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
            stderr, returncode = "", None
        for line in stdout.splitlines():
            if not line.startswith(MARK):
                continue
            event = json.loads(line[len(MARK):])
            mode, layout, wtype = event["job"]
            job = (str(mode), str(layout), str(wtype))
            if "ok" in event:
                verdicts[job] = Verdict(bool(event["ok"]), str(event["reason"]))
            else:
                started.append(job)
        unfinished = [j for j in remaining if j not in verdicts]
        if not unfinished:
            break
        culprit = next((j for j in started if j not in verdicts), None)
        if returncode is None:
            why, cache = f"the self-test did not finish within {CHILD_TIMEOUT_S} s", False
        elif culprit is None:  # the child failed before any job: nothing is known of the kernels
            why, cache = f"the self-test process failed ({_death(returncode)}): {_last_words(stderr)}", False
        else:
            why, cache = (f"the driver crashed building or running the kernels ({_death(returncode)}); "
                          f"its last message: {_last_words(stderr)}"), True
        for job in [culprit] if culprit is not None else unfinished:
            verdicts[job] = Verdict(False, why, cache)
        remaining = [j for j in unfinished if j not in verdicts]
    return verdicts


def _by_reason(failures: Sequence[tuple[str, str]], noun: str) -> str:
    """'a, b layout: why; c layout: other' -- each distinct reason once, after what gave it."""
    grouped: dict[str, list[str]] = {}
    for what, why in failures:
        grouped.setdefault(why, []).append(what)
    return "; ".join(f"{', '.join(whats)} {noun}: {why}" for why, whats in grouped.items())


def make_plan(
    device: object, where: tuple[int, int], layouts: Sequence[str], deterministic_problem: str | None,
    wtypes: Sequence[str] = FLOAT_TYPES,
) -> Plan:
    """The layout for each mode and each of `wtypes`: the first of `layouts` that passes the self-test."""
    fault_spec = os.environ.get(FAULT_ENV, "")
    try:
        parse_faults(fault_spec)
    except ValueError as exc:
        raise BackendUnavailable(str(exc)) from exc
    identity = device_identity(device)
    todo = {(mode, wt): list(layouts) for mode in MODES for wt in wtypes}
    refused: dict[tuple[str, str], str] = {}
    if deterministic_problem:
        for dt in wtypes:
            refused["deterministic", dt] = deterministic_problem
            del todo["deterministic", dt]
    chosen: dict[tuple[str, str], str] = {}
    failures: dict[tuple[str, str], list[tuple[str, str]]] = {}
    started = time.perf_counter()
    tested = 0
    while todo:
        jobs = [(mode, candidates[0], dt) for (mode, dt), candidates in todo.items()]
        keys = {job: _key(identity, job, fault_spec) for job in jobs}
        cached = {job: _cached(key) for job, key in keys.items()}
        verdicts = {job: v for job, v in cached.items() if v is not None}
        missing = [job for job in jobs if job not in verdicts]
        if missing:
            fresh = run_children(where, identity["device"], missing)
            tested += len(missing)
            for job, verdict in fresh.items():
                if verdict.cache:
                    _store(keys[job], verdict)
            verdicts.update(fresh)
        for (mode, layout, dt), verdict in verdicts.items():
            if verdict.ok:
                chosen[mode, dt] = layout
                del todo[mode, dt]
                continue
            failures.setdefault((mode, dt), []).append((layout, verdict.reason))
            todo[mode, dt].pop(0)
            if not todo[mode, dt]:
                refused[mode, dt] = "self-test failed: " + _by_reason(failures[mode, dt], "layout")
                del todo[mode, dt]
    what = "" if wtypes == FLOAT_TYPES else f"{', '.join(wtypes)}: "
    if tested:
        provenance = (f"{what}{tested} combination(s) self-tested in a child process in "
                      f"{time.perf_counter() - started:.1f} s; verdicts cached in {cache_dir()}")
    else:
        provenance = f"{what}verdicts read from {cache_dir()} in {(time.perf_counter() - started) * 1e3:.1f} ms"
    if fault_spec:
        provenance += f" (faults injected: {FAULT_ENV}={fault_spec})"
    return Plan(chosen, refused, provenance)
