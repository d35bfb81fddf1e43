"""The child process that runs one plain-Python candidate against a task's checks. Started by
:mod:`miniworld.sandbox.python_sandbox`, one process per candidate, never in the trainer's process.

It confines itself before reading any candidate code (a fresh network namespace, Landlock with
writes only below its scratch directory, rlimits, a CPU budget), runs the program with restricted
builtins (module imports come back as proxies of a safe-list, ``eval`` text is re-checked by
:mod:`miniworld.sandbox.pygate`), then runs each check of the task (a top-level statement of the test's
``check`` function that holds an ``assert``) separately, so the reward can count how many pass.
Events go back as JSON lines on the file descriptor given with ``--fd``: the parent reads them
against its own deadline, and kills the process group when it is done.
"""
from __future__ import annotations

import argparse
import ast
import builtins as _builtins
import ctypes
import functools
import json
import os
import sys
from types import ModuleType, SimpleNamespace
from typing import Any, Callable

from miniworld.sandbox import isolation, pygate

#: Builtins a candidate does not get (``__import__`` and ``eval`` are replaced, ``print`` capped).
_WITHHELD = frozenset({"open", "exec", "compile", "input", "breakpoint", "help", "exit", "quit",
                       "globals", "locals", "vars", "getattr", "setattr", "delattr", "memoryview",
                       "copyright", "credits", "license", "__loader__", "__spec__", "__import__",
                       "eval", "print"})



def _proxy(name: str, cache: dict[str, SimpleNamespace]) -> SimpleNamespace:
    """A safe-listed module as a namespace of its public, non-module members (and its
    safe-listed submodules as proxies): ``typing.sys`` or ``collections._sys`` never leak."""
    if name in cache:
        return cache[name]
    module = __import__(name, fromlist=["_"])
    members = {}
    for attr in dir(module):
        if attr.startswith("_") or attr in pygate.BLOCKED_ATTRIBUTES:
            continue
        value = getattr(module, attr)
        if not isinstance(value, ModuleType):
            members[attr] = value
    for sub in pygate.SAFE_MODULES:
        if sub.startswith(name + ".") and "." not in sub[len(name) + 1:]:
            members[sub[len(name) + 1:]] = _proxy(sub, cache)
    cache[name] = SimpleNamespace(**members)
    return cache[name]


def candidate_builtins(cap: int) -> tuple[dict[str, Any], isolation.CappedText]:
    """The builtins a candidate program runs with, and its captured stdout."""
    out = isolation.CappedText(cap)
    allowed = {k: v for k, v in vars(_builtins).items() if k not in _WITHHELD}
    proxies: dict[str, SimpleNamespace] = {}

    def safe_import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:  # noqa: A002
        if level or name not in pygate.SAFE_MODULES:
            raise ImportError(f"import of {name!r} is not allowed in the sandbox")
        return _proxy(name if fromlist else name.split(".")[0], proxies)

    def gated_eval(source: Any, globals: Any = None, locals: Any = None) -> Any:  # noqa: A002
        if not isinstance(source, str):
            raise TypeError("eval() takes a string expression in the sandbox")
        violations = pygate.check(source, mode="eval")
        if violations:
            raise PermissionError(f"policy violation at run time: {violations[0]}")
        scope = globals if isinstance(globals, dict) else {}
        scope["__builtins__"] = allowed  # never the real builtins, whatever dict was passed
        return _builtins.eval(source, scope, locals)

    allowed.update({"__import__": safe_import, "eval": gated_eval,
                    "print": functools.partial(_builtins.print, file=out)})
    return allowed, out


def split_checks(test: str) -> tuple[list[ast.stmt], list[tuple[ast.stmt, bool]]]:
    """The test's module statements other than ``check``, and ``check``'s body as (statement,
    is_check) pairs: a statement is a check when it holds an ``assert`` whose test is not a
    constant (``assert True, "..."`` is a no-op in HumanEval's tests)."""
    tree = ast.parse(test)
    module = [s for s in tree.body if not (isinstance(s, ast.FunctionDef) and s.name == "check")]
    fn = next((s for s in tree.body if isinstance(s, ast.FunctionDef) and s.name == "check"), None)
    if fn is None:
        raise ValueError("the test defines no check(candidate) function")
    body = []
    for stmt in fn.body:
        asserts = [n for n in ast.walk(stmt) if isinstance(n, ast.Assert)]
        body.append((stmt, any(not isinstance(a.test, ast.Constant) for a in asserts)))
    return module, body


def describe(exc: BaseException) -> dict:
    message = f"{exc.msg} (line {exc.lineno})" if isinstance(exc, SyntaxError) else str(exc)
    return {"type": type(exc).__name__, "message": message[:1000]}


def _run_statement(stmt: ast.stmt, scope: dict) -> None:
    exec(compile(ast.Module([stmt], type_ignores=[]), "<check>", "exec"), scope)  # noqa: S102 - trusted test


def run(job: dict, emit: Callable[[dict], None]) -> None:
    """Run the program, then each check; every outcome is an event, nothing raises."""
    module_stmts, body = split_checks(job["test"])
    allowed, out = candidate_builtins(int(job.get("stdout_cap", 8192)))
    scope: dict[str, Any] = {"__builtins__": allowed, "__name__": "candidate"}
    try:
        code = compile(job["program"], "<candidate>", "exec")
        exec(code, scope)  # noqa: S102 - the point of the sandbox; see docs/SECURITY.md
    except BaseException as exc:  # noqa: BLE001 - whatever the program raises is its result
        emit({"event": "error", "phase": "program", "error": describe(exc), "stdout": out.value()})
        return
    entry = scope.get(job["entry_point"])
    if not callable(entry):
        emit({"event": "error", "phase": "program", "stdout": out.value(),
              "error": {"type": "NameError", "message": f"the code defines no function named {job['entry_point']!r}"}})
        return
    # The trusted test runs in its own scope: the real builtins and the prompt's own imports and
    # helpers (HumanEval/32's ``poly``), run again here, never the program's names (a program
    # defining ``abs`` would otherwise pass ``assert abs(candidate(x) - y) < 1e-6``).
    test_scope: dict[str, Any] = {"__builtins__": _builtins, "__name__": "check"}
    exec(compile(job.get("trusted", ""), "<prompt>", "exec"), test_scope)  # noqa: S102 - the dataset's prompt
    test_scope[job["entry_point"]] = entry  # HumanEval/33's test calls the function by its name
    for stmt in module_stmts:
        _run_statement(stmt, test_scope)
    test_scope["candidate"] = entry
    index = 0
    for stmt, is_check in body:
        try:
            _run_statement(stmt, test_scope)
        except AssertionError:
            if not is_check:  # cannot happen (a non-check holds no live assert); be explicit
                raise
            emit({"event": "check", "index": index, "passed": False, "error": None})
        except BaseException as exc:  # noqa: BLE001
            if not is_check:  # setup the later checks need failed: they cannot run
                emit({"event": "error", "phase": "check", "error": describe(exc), "stdout": out.value()})
                return
            emit({"event": "check", "index": index, "passed": False, "error": describe(exc)})
        else:
            if is_check:
                emit({"event": "check", "index": index, "passed": True, "error": None})
        index += is_check
    emit({"event": "done", "stdout": out.value()})


def _leave_network() -> bool:
    """A new, empty network namespace for this process (root or user namespaces)."""
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.unshare(isolation.CLONE_NEWNET) == 0


def confine(job: dict) -> dict:
    """Network, file system and resource confinement, before any candidate code is read."""
    network = bool(job.get("network")) and _leave_network()
    landlock = False
    if job.get("landlock"):
        try:
            isolation.restrict_filesystem(job["read_paths"], [job["scratch"]])
            landlock = True
        except Exception:  # noqa: BLE001 - reported; the parent warns
            landlock = False
    os.chdir(job["scratch"])
    isolation.apply_rlimits(isolation.Limits(**job["limits"]))
    isolation.set_cpu_budget(float(job["timeout_s"]) + 1.0)
    return {"event": "ready", "network": network, "landlock": landlock}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="file descriptor for the event lines")
    writer = os.fdopen(parser.parse_args().fd, "w", encoding="utf-8")

    def emit(event: dict) -> None:
        writer.write(json.dumps(event) + "\n")
        writer.flush()

    job = json.loads(sys.stdin.read())
    sys.stdin.close()
    if job.get("landlock"):
        import landlock  # noqa: F401 - imported before the file system closes
    emit(confine(job))
    run(job, emit)


if __name__ == "__main__":
    main()
