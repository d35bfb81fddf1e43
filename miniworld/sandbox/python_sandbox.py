"""Evaluate plain-Python candidates (HumanEval tasks) in the sandbox's discipline: the AST gate
(:mod:`miniworld.sandbox.pygate`), then one confined subprocess per candidate (:mod:`miniworld.sandbox.python_child`:
scrubbed environment, rlimits, Landlock, no network) under a wall-clock deadline with an output
cap and a scratch directory removed afterwards, many candidates in parallel; outcome and reward
are decided here, in the trusted parent, from the checks the child reports.

``PythonSandbox`` has the interface of :class:`miniworld.sandbox.spark_sandbox.Sandbox` (``evaluate``,
``evaluate_many``, ``close``, a context manager) without starting Spark, so a python-kind suite
trains and benchmarks with no JVM at all; the suite's kind (:mod:`miniworld.kinds`) opens it.
"""
from __future__ import annotations

import ast
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from miniworld.sandbox import isolation, pygate
from miniworld.checks import CheckResult
from miniworld.sandbox.pool import _import_roots
from miniworld.sandbox.python_child import split_checks
from miniworld.sandbox.result import Result
from miniworld.task import Task

#: The most event bytes read back from one candidate (its stdout is capped well below this).
MAX_REPLY_BYTES = 1024 * 1024
#: Start-up allowance (interpreter, confinement) before the candidate's own deadline starts.
START_GRACE_S = 5.0
_UNKNOWN_TYPES = ("NameError", "AttributeError", "ImportError", "ModuleNotFoundError", "UnboundLocalError")


@dataclass(frozen=True)
class PythonLimits:
    """Per-candidate resource limits: HumanEval solutions need little of anything."""

    address_space: int = 1024**3
    file_size: int = 1024**2
    open_files: int = 64


# -- the program that runs ------------------------------------------------------------------
def _strip_main(tree: ast.Module) -> ast.Module:
    """Drop ``if __name__ == "__main__":`` blocks: the harness never runs them (models often
    append a doctest run there, which would only trip the gate)."""
    def is_main(s: ast.stmt) -> bool:
        return isinstance(s, ast.If) and "__main__" in ast.unparse(s.test) and "__name__" in ast.unparse(s.test)

    tree.body = [s for s in tree.body if not is_main(s)]
    return tree


def _defines(tree: ast.Module, name: str) -> bool:
    return any(isinstance(s, ast.FunctionDef) and s.name == name for s in tree.body)


def preamble(task: Task) -> str:
    """The prompt without the function to write: its imports and helper functions (HumanEval/38's
    ``encode_cyclic``), which a model's answer may rely on without repeating them."""
    tree = ast.parse(task.spec)
    keep = [s for s in tree.body if not (isinstance(s, ast.FunctionDef) and s.name == task.entry_point)]
    return "\n\n".join(ast.get_source_segment(task.spec, s) or ast.unparse(s) for s in keep)


def program(task: Task, code: str) -> str:
    """The program that runs: the prompt's preamble + the answer when the answer defines the
    function; the prompt + the answer when the answer is a completion of the prompt (HumanEval's
    original convention: a body only); else the preamble + the answer (which then fails as it
    is, e.g. with a syntax error)."""
    head = preamble(task)
    for text in (f"{head}\n\n{code}", f"{task.spec}{code}"):
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        if _defines(tree, task.entry_point):
            size = len(tree.body)
            stripped = _strip_main(tree)
            return text if len(stripped.body) == size else ast.unparse(stripped)  # as written, unless stripped
    return f"{head}\n\n{code}"


# -- scoring (trusted parent) ------------------------------------------------------------------
def classify(error: dict) -> str:
    """Outcome name for an exception the candidate raised."""
    etype, message = error.get("type", ""), str(error.get("message", ""))
    if etype in _UNKNOWN_TYPES:
        return "unknown_reference"
    if etype == "SyntaxError":
        return "syntax_error"
    if etype == "MemoryError":
        return "resource_limit"
    if etype == "PermissionError" and message.startswith("policy violation"):
        return "policy_violation"
    return "runtime_error"


def check_sources(task: Task) -> list[str]:
    """Source text of each check of the task (for feedback), in the runner's order."""
    _, body = split_checks(task.test_code)
    return [ast.get_source_segment(task.test_code, s) or ast.unparse(s) for s, is_check in body if is_check]


def _feedback(outcome: str, error: str | None, checks: list[CheckResult]) -> str:
    """What a self-correction turn is told: the error, or the first failing checks' source."""
    if outcome == "correct":
        return "All checks passed."
    passed = sum(c.passed for c in checks)
    lines = [f"The code failed ({outcome}): {error}" if error else
             f"The code ran but returned wrong results ({passed}/{len(checks)} checks passed)."]
    failing = [c for c in checks if not c.passed and c.detail][:2]
    if failing and outcome in ("wrong_result", "runtime_error", "unknown_reference", "timeout"):
        lines.append("Failing checks:\n" + "\n".join(c.detail for c in failing))
    return "\n".join(lines)


def score(task: Task, events: list[dict], status: str, duration_s: float) -> Result:
    """Outcome, reward and feedback from the child's events and how it ended (``status``:
    "done", "timeout", "crashed", "killed", "xcpu", "overflow")."""
    sources = check_sources(task)
    total = len(sources)
    verdicts: dict[int, dict] = {e["index"]: e for e in events if e.get("event") == "check"}
    checks = []
    for i, src in enumerate(sources):
        v = verdicts.get(i)
        passed = bool(v and v.get("passed"))
        err = (v or {}).get("error")
        detail = "" if passed else (src[:300] + (f"  -> {err['type']}: {err['message'][:200]}" if err else ""))
        checks.append(CheckResult(f"check_{i}", "tests", passed, detail))
    passed = sum(c.passed for c in checks)
    fatal = next((e for e in events if e.get("event") == "error"), None)
    check_errors = [v["error"] for v in verdicts.values() if v.get("error")]
    stdout = next((e.get("stdout", "") for e in events if "stdout" in e), "")
    if fatal is not None:
        err = fatal["error"]
        outcome, error = classify(err), f"{err['type']}: {err['message'][:400]}"
    elif status in ("timeout", "xcpu"):
        outcome, error = "timeout", "the code did not finish within the time limit"
    elif status in ("killed", "overflow"):
        outcome, error = "resource_limit", ("the process was killed (memory or another limit)" if status == "killed"
                                            else "the output exceeded the cap")
    elif status != "done":
        outcome, error = "runtime_error", "the process exited before finishing its checks"
    elif check_errors:
        err = check_errors[0]
        outcome, error = classify(err), f"{err['type']}: {err['message'][:400]}"
    else:
        outcome, error = ("correct", None) if total and passed == total else ("wrong_result", None)
    reward = passed / total if total else 0.0
    if outcome != "correct" and reward >= 1.0:  # e.g. all checks passed, then the process died
        reward = (total - 1) / total
    return Result(task.id, outcome, reward, passed, total, error, _feedback(outcome, error, checks),
                  float(duration_s), tuple(checks), str(stdout)[:2000])


def gate(task: Task, code: str) -> tuple[str | None, Result | None]:
    """(program to run, None) or (None, the gate's Result)."""
    text = program(task, code)
    total = task.checks_total
    try:
        violations = pygate.check(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        error = (f"SyntaxError: {exc.msg} (line {exc.lineno})" if isinstance(exc, SyntaxError)
                 else f"{type(exc).__name__}: the code could not be parsed")
        return None, Result(task.id, "syntax_error", 0.0, 0, total, error, _feedback("syntax_error", error, []), 0.0)
    if violations:
        error = "policy violation: " + "; ".join(str(v) for v in violations[:3])
        return None, Result(task.id, "policy_violation", 0.0, 0, total, error,
                            _feedback("policy_violation", error, []), 0.0)
    return text, None


# -- the sandbox -----------------------------------------------------------------------------
class PythonSandbox:
    """Runs plain-Python candidates in confined subprocesses, ``workers`` at a time."""

    server_pid = None  # no Spark server: the Sandbox interface, for callers that ask

    def __init__(self, workers: int | None = None, timeout_s: float = 10.0, isolate: bool = True,
                 limits: PythonLimits = PythonLimits(), stdout_cap: int = 8192) -> None:
        self.timeout_s = timeout_s
        self.isolate = isolate
        self.limits = limits
        self.stdout_cap = stdout_cap
        self.landlock = isolate and isolation.landlock_available()
        self.read_paths = isolation.system_read_paths() if self.landlock else []
        self._root = tempfile.mkdtemp(prefix="miniworld-py-")
        self._pool = ThreadPoolExecutor(workers or max(os.cpu_count() or 2, 2), thread_name_prefix="pysandbox")
        self._warned: set[str] = set()
        self.warnings: list[str] = [] if self.landlock or not isolate else \
            ["Landlock is not available: python candidates are not confined to their scratch directory"]

    def __enter__(self) -> PythonSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
            shutil.rmtree(self._root, ignore_errors=True)

    def evaluate(self, task: Task, code: str, timeout_s: float | None = None) -> Result:
        return self.evaluate_many([(task, code)], timeout_s)[0]

    def evaluate_many(self, items: list[tuple[Task, str]], timeout_s: float | None = None) -> list[Result]:
        """Score (task, code) pairs: gate, run in parallel, score (results in input order)."""
        for task, _ in items:
            if not task.entry_point:
                raise ValueError(f"task {task.id!r} names no function to write: it is not a plain-Python task")
        return list(self._pool.map(lambda item: self._evaluate(*item, timeout_s or self.timeout_s), items))

    def _evaluate(self, task: Task, code: str, timeout_s: float) -> Result:
        text, gated = gate(task, code)
        if gated is not None:
            return gated
        started = time.monotonic()
        events, status = self.run_raw(task, text, timeout_s)
        return score(task, events, status, time.monotonic() - started)

    def run_raw(self, task: Task, text: str, timeout_s: float) -> tuple[list[dict], str]:
        """Run an (already gated) program on the task's checks in a fresh confined child:
        its events and how it ended. The scratch directory is removed afterwards."""
        scratch = tempfile.mkdtemp(prefix="run-", dir=self._root)
        job = {"program": text, "entry_point": task.entry_point, "test": task.test_code, "trusted": preamble(task),
               "scratch": scratch,
               "read_paths": self.read_paths, "landlock": self.landlock, "network": self.isolate,
               "limits": vars(self.limits), "timeout_s": timeout_s, "stdout_cap": self.stdout_cap}
        read_fd, write_fd = os.pipe()
        env = isolation.scrubbed_env(scratch, {"PYTHONPATH": os.pathsep.join(_import_roots())})
        with open(os.path.join(scratch, "stderr.log"), "wb") as stderr:
            proc = subprocess.Popen([sys.executable, "-m", "miniworld.sandbox.python_child", "--fd", str(write_fd)],
                                    pass_fds=(write_fd,), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=stderr, env=env, cwd=scratch, start_new_session=True)
        os.close(write_fd)
        try:
            try:
                proc.stdin.write(json.dumps(job).encode())
                proc.stdin.close()
            except BrokenPipeError:
                pass
            events, status = self._read_events(read_fd, proc, timeout_s)
        finally:
            os.close(read_fd)
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # its whole session: nothing it started survives
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
            shutil.rmtree(scratch, ignore_errors=True)
        if status == "eof":
            status = {-signal.SIGXCPU: "xcpu", -signal.SIGKILL: "killed", -signal.SIGSEGV: "killed"}.get(
                proc.returncode, "crashed")
        ready = next((e for e in events if e.get("event") == "ready"), {})
        for layer in ("network", "landlock"):
            wanted = self.isolate if layer == "network" else self.landlock
            if ready and wanted and not ready.get(layer) and layer not in self._warned:
                self._warned.add(layer)
                self.warnings.append(f"python candidates run without {layer} confinement (the OS refused it)")
        return events, status

    def _read_events(self, fd: int, proc: subprocess.Popen, timeout_s: float) -> tuple[list[dict], str]:
        """Event lines until "done"/"error", EOF, the deadline (which starts once the child is
        confined) or the byte cap."""
        deadline = time.monotonic() + START_GRACE_S + timeout_s
        buffer, events, size = b"", [], 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return events, "timeout"
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return events, "timeout"
            chunk = os.read(fd, 65536)
            if not chunk:
                return events, "eof"
            size += len(chunk)
            if size > MAX_REPLY_BYTES:
                return events, "overflow"
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                try:
                    event = json.loads(line)
                except ValueError:
                    return events, "crashed"
                if not isinstance(event, dict):
                    return events, "crashed"
                events.append(event)
                if event.get("event") == "ready":
                    deadline = time.monotonic() + timeout_s
                if event.get("event") in ("done", "error"):
                    return events, "done"

