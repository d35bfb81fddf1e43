"""A sandbox worker: a separate, confined Python process that runs candidate code as a Spark
Connect client and sends back what the code produced. Started by :mod:`miniworld.sandbox.pool`.

Protocol: one JSON object per line on the file descriptors given with ``--fds IN,OUT``; the first
message configures the worker, each later one is a job. The worker never scores anything: it
returns schemas and (capped) rows, and the trusted parent compares them, so code that escapes
into the worker still cannot forge a reward.
"""
from __future__ import annotations

import _thread
import argparse
import builtins as _builtins
import json
import os
import sys
import threading
import time
import traceback
from types import SimpleNamespace
from typing import Any

from miniworld import rows
from miniworld.sandbox import isolation, gate
from miniworld.sandbox.server import DEFAULT_CONF

_SAFE_BUILTINS = (
    "abs all any bool dict enumerate filter float frozenset int isinstance issubclass iter len "
    "list map max min next print range repr reversed round set slice sorted str sum tuple zip "
    "divmod chr ord hash callable Exception ValueError TypeError KeyError IndexError "
    "ZeroDivisionError AttributeError NameError RuntimeError StopIteration ArithmeticError "
    "LookupError AssertionError NotImplementedError True False None"
).split()

#: ``pyspark.sql.functions`` names a candidate may not call even through a proxy.
_BLOCKED_FUNCTIONS = {"udf", "udtf", "pandas_udf", "call_udf", "reflect", "java_method",
                      "try_reflect", "input_file_name", "call_function", "arrow_udf", "arrow_udtf",
                      "UserDefinedFunction", "UserDefinedTableFunction", "PandasUDFType",
                      "ArrowUDFType", "AnalyzeArgument", "AnalyzeResult"}



def _proxy(module: Any, blocked: set[str]) -> SimpleNamespace:
    """A namespace with a module's own public callables and classes: those in its ``__all__`` or
    defined in it (``F.countDistinct`` is not in ``__all__``), none of its submodules, nothing it
    merely imports (``pyspark.sql.types.CloudPickleSerializer``, whose ``loads`` unpickles, i.e.
    runs, any code) and no metaclass (``T.DataTypeSingleton`` would build classes like ``type``)."""
    exported, home = set(getattr(module, "__all__", ())), module.__name__
    names = {}
    for n in dir(module):
        value = getattr(module, n)
        if n.startswith("_") or n in blocked or isinstance(value, type(sys)):
            continue
        if isinstance(value, type) and issubclass(value, type):
            continue
        if n in exported or str(getattr(value, "__module__", "")).startswith(home):
            names[n] = value
    return SimpleNamespace(**names)


#: Proto string fields the server parses as SQL (``F.expr``/``selectExpr``/``filter("...")``,
#: ``SQL`` relations) or resolves as a function name (``agg({"x": "reflect"})``).
_SQL_EXPRESSION_FIELDS = frozenset({"expression", "query", "sql"})
_SQL_FUNCTION_FIELDS = frozenset({"function_name"})
#: Functions whose second argument is a schema the server parses with ``DataType.fromJson``: a
#: user-defined type there (``{"type": "udt", "class": X, ...}``) makes the JVM construct class X.
#: The schema must arrive as a literal (checked by :func:`gate.udt_violation`), not as an
#: expression the server folds (``concat('{"type":"udt","class":...py', 'Class...')``).
_SCHEMA_FUNCTIONS = frozenset({"from_json", "from_csv", "from_xml"})


def _check_request(request: Any) -> None:
    """Reject a plan whose SQL text reaches the JVM, server files or other views, or whose schema
    text declares a user-defined type. The AST policy sees only string constants; this sees the
    text actually sent, however it was assembled."""
    stack = [request]
    while stack:
        message = stack.pop()
        if message.DESCRIPTOR.name == "UnresolvedFunction" and \
                message.function_name.lower() in _SCHEMA_FUNCTIONS and len(message.arguments) > 1 and \
                message.arguments[1].WhichOneof("expr_type") != "literal":
            raise PermissionError(f"policy violation at run time: {message.function_name} takes its "
                                  "schema as a literal string or DataType, not as an expression")
        for field, value in message.ListFields():
            if isinstance(value, (bytes, bool, int, float)):
                continue
            items = [value] if isinstance(value, str) or hasattr(value, "ListFields") else (
                list(value.values()) if hasattr(value, "keys") else list(value))
            for item in items:
                if hasattr(item, "ListFields"):
                    stack.append(item)
                elif isinstance(item, str):
                    why = (gate.sql_text_violation(item, expression=True)
                           if field.name in _SQL_EXPRESSION_FIELDS else
                           gate.sql_function_violation(item) if field.name in _SQL_FUNCTION_FIELDS
                           else None) or gate.udt_violation(item)  # schema, literal, cast type
                    if why:
                        raise PermissionError(f"policy violation at run time: {why}")


class _CheckedStub:
    """The session's gRPC stub with every plan checked (:func:`_check_request`) before it leaves."""

    def __init__(self, stub: Any) -> None:
        self._stub = stub

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stub, name)

    def ExecutePlan(self, request: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N802 - gRPC name
        _check_request(request)
        return self._stub.ExecutePlan(request, *args, **kwargs)

    def AnalyzePlan(self, request: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N802 - gRPC name
        _check_request(request)
        return self._stub.AnalyzePlan(request, *args, **kwargs)


def _refuse_udt(cls: Any, json: Any) -> Any:
    """Replaces ``UserDefinedType.fromJson``, which imports the module a schema names: a schema
    the server sends back (``from_json`` with a JSON schema assembled in SQL) must not make the
    worker import anything. Candidates have no use for user-defined types."""
    raise PermissionError("policy violation at run time: user-defined types are not allowed")


class _Session:
    """What candidate code sees as ``spark``: DataFrame constructors only."""

    __slots__ = ("createDataFrame", "range", "version")

    def __init__(self, spark: Any) -> None:
        self.createDataFrame = spark.createDataFrame
        self.range = spark.range
        self.version = spark.version


def _unavailable_retry_policy() -> Any:
    """Connect's retry policy for this worker: a few quick retries (~3 s in all) instead of the
    default ten minutes, so that a dead or unreachable server surfaces as an ``UNAVAILABLE``
    error well inside a job's deadline, which the parent recognises and recovers from (a hang
    would read as the candidate's timeout)."""
    from pyspark.sql.connect.client.retries import DefaultPolicy

    return DefaultPolicy(max_retries=5, initial_backoff=100, backoff_multiplier=2.0, max_backoff=2000,
                         jitter=0, min_jitter_threshold=0)


#: Column that tags each dataset's rows in the one-job union (a name candidates cannot write).
_DATASET_COLUMN = "__miniworld_dataset__"


class Worker:
    """Holds one Spark Connect session and runs jobs on it, one at a time."""

    def __init__(self, remote: str) -> None:
        from pyspark.sql import DataFrame, SparkSession, Window
        from pyspark.sql import functions as F
        from pyspark.sql import types as T

        self.spark = SparkSession.builder.remote(remote).getOrCreate()
        self.spark.client.set_retry_policies([_unavailable_retry_policy()])
        self.spark.client._stub = _CheckedStub(self.spark.client._stub)
        T.UserDefinedType.fromJson = classmethod(_refuse_udt)
        # Expected outputs were computed on the local server's settings; a remote server (a
        # cluster, Databricks) has its own defaults, so pin the ones results depend on.
        for key in ("spark.sql.session.timeZone",):
            self.spark.conf.set(key, DEFAULT_CONF[key])
        self.dataframe_type = DataFrame
        self._lit = F.lit
        f_proxy, t_proxy = _proxy(F, _BLOCKED_FUNCTIONS), _proxy(T, set())
        window_module = SimpleNamespace(Window=Window)
        sql = SimpleNamespace(functions=f_proxy, types=t_proxy, window=window_module, Window=Window,
                              DataFrame=DataFrame, Column=F.col("x").__class__, Row=T.Row)
        self.packages = {"pyspark": SimpleNamespace(sql=sql), "pyspark.sql": sql,
                         "pyspark.sql.functions": f_proxy, "pyspark.sql.types": t_proxy,
                         "pyspark.sql.window": window_module}
        self.scope = {"F": f_proxy, "T": t_proxy, "Window": Window, "DataFrame": DataFrame,
                      "spark": _Session(self.spark)}
        self.registered: set[str] = set()

    def _import(self, name: str, globals=None, locals=None, fromlist=(), level=0):  # noqa: A002
        """``__import__`` for candidates: only the pyspark.sql proxies, nothing else."""
        if level or name not in self.packages:
            raise ImportError(f"import of {name!r} is not allowed in the sandbox")
        if fromlist:
            return self.packages[name]
        return self.packages[name.split(".")[0]]

    def _register(self, view: str, payload: dict) -> None:
        if view in self.registered:
            return
        frame = self.spark.createDataFrame(rows.decode_rows(payload["rows"]), schema=payload["schema"])
        frame.createOrReplaceGlobalTempView(view)
        self.registered.add(view)

    def run(self, job: dict) -> dict:
        """Execute one candidate against each dataset of one task; never raises."""
        started = time.monotonic()
        out = isolation.CappedText()
        timed_out = threading.Event()
        tag = job["tag"]
        # The watchdog interrupts the main thread only while this job runs: interruptTag is a round
        # trip that can outlast the job, and an interrupt landing after run() returned would kill
        # the worker (exit -SIGINT) between jobs.
        running, running_lock = [True], threading.Lock()

        def on_timeout() -> None:
            timed_out.set()
            try:
                self.spark.interruptTag(tag)
            finally:
                with running_lock:
                    if running[0]:
                        _thread.interrupt_main()

        allowed = {n: getattr(_builtins, n) for n in _SAFE_BUILTINS}
        allowed["__import__"] = self._import
        allowed["print"] = lambda *a, **k: print(*a, **{**k, "file": out})
        namespace: dict[str, Any] = {"__builtins__": allowed, "__name__": "candidate", **self.scope}
        results: list[dict] = []
        isolation.set_cpu_budget(job["timeout_s"] + 5)
        watchdog = threading.Timer(job["timeout_s"], on_timeout)
        watchdog.daemon = True
        self.spark.addTag(tag)
        watchdog.start()
        try:
            for dataset in job["datasets"]:
                for view, payload in (dataset.get("register") or {}).items():
                    self._register(view, payload)
            try:
                code = compile(job["code"], "<candidate>", "exec")
            except SyntaxError as exc:
                return {"status": "syntax_error", "error": _describe(exc), "stdout": ""}
            try:
                exec(code, namespace)  # noqa: S102 - the point of the sandbox; see docs/SECURITY.md
            except BaseException as exc:  # noqa: BLE001 - everything the candidate raises is a result
                return self._failure(exc, timed_out, out)
            entry = namespace.get(job.get("entry", "transform"))
            if not callable(entry):
                return {"status": "error", "error": {"type": "NameError", "condition": None,
                        "message": f"the code defines no function named {job.get('entry', 'transform')!r}"},
                        "stdout": out.value()}
            results = self._run_all(entry, job["datasets"], job["max_rows"], timed_out)
        except BaseException as exc:  # noqa: BLE001 - e.g. the watchdog's interrupt between datasets
            return self._failure(exc, timed_out, out)
        finally:
            with running_lock:
                running[0] = False
            watchdog.cancel()
            try:
                self.spark.removeTag(tag)
            except Exception:  # noqa: BLE001 - a broken session is caught by the next job
                pass
        return {"status": "timeout" if timed_out.is_set() else "ok", "datasets": results,
                "stdout": out.value(), "duration_s": time.monotonic() - started}

    def _frame(self, entry: Any, dataset: dict) -> Any:
        inputs = {arg: self.spark.table(f"global_temp.{view}") for arg, view in dataset["inputs"].items()}
        result = entry(**inputs)
        if not isinstance(result, self.dataframe_type):
            raise TypeError(f"transform returned {type(result).__name__}, not a DataFrame")
        return result

    def _run_all(self, entry: Any, datasets: list[dict], max_rows: int, timed_out: threading.Event) -> list[dict]:
        """All datasets in ONE Spark job when possible (each result tagged with its dataset and
        the results unioned), else one job per dataset so that errors land where they occur.

        Round trips dominate small-data latency; one job instead of one per dataset is what
        makes the pool faster than running in-process (benchmarks/env_throughput.py)."""
        try:
            frames = [self._frame(entry, d) for d in datasets]
            tagged = [f.limit(max_rows + 1).select(self._lit(i).alias(_DATASET_COLUMN), "*")
                      for i, f in enumerate(frames)]
            union = tagged[0]
            for other in tagged[1:]:
                union = union.union(other)
            schema, collected = _collect(union, len(datasets) * (max_rows + 1))
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, KeyboardInterrupt) and not timed_out.is_set():
                raise
            if timed_out.is_set():
                return [{"error": _describe(exc, True)}]
            condition = _describe(exc)["condition"] or ""
            if condition.startswith("UNRESOLVED_") or isinstance(exc, (NameError, AttributeError, TypeError)) \
                    or _grpc_status(exc) == "UNAVAILABLE":  # no server: no point asking per dataset
                return [{"error": _describe(exc)} for _ in datasets]  # fails alike on every dataset
            return [self._run_dataset(entry, d, max_rows, timed_out) for d in datasets]
        fields = [[f.name, f.dataType.simpleString()] for f in schema.fields[1:]]
        per: list[list] = [[] for _ in datasets]
        for row in collected:
            per[row[0]].append(tuple(row)[1:])
        return [{"schema": fields, "rows": rows.encode_rows(r[:max_rows]), "truncated": len(r) > max_rows}
                for r in per]

    def _run_dataset(self, entry: Any, dataset: dict, max_rows: int, timed_out: threading.Event) -> dict:
        try:
            schema, collected = _collect(self._frame(entry, dataset), max_rows + 1)
            return {"schema": [[f.name, f.dataType.simpleString()] for f in schema.fields],
                    "rows": rows.encode_rows(collected[:max_rows]), "truncated": len(collected) > max_rows}
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, KeyboardInterrupt) and not timed_out.is_set():
                raise
            return {"error": _describe(exc, timed_out.is_set())}

    def _failure(self, exc: BaseException, timed_out: threading.Event, out: isolation.CappedText) -> dict:
        status = "timeout" if timed_out.is_set() else "error"
        return {"status": status, "error": _describe(exc, timed_out.is_set()), "stdout": out.value()}


def _collect(frame: Any, limit: int) -> tuple[Any, list]:
    """Rows and schema in ONE round trip. ``DataFrame.collect()`` also fetches a config value
    and ``.schema`` costs an AnalyzePlan call: three RPCs per dataset instead of one. This uses
    Connect's ``_to_table`` (private; pyspark is pinned to 4.2.0, and a test covers it)."""
    from pyspark.sql.conversion import ArrowTableToRowsConversion
    from pyspark.sql.pandas.types import from_arrow_schema

    table, schema = frame.limit(limit)._to_table()
    schema = schema or from_arrow_schema(table.schema, prefer_timestamp_ntz=True)
    return schema, ArrowTableToRowsConversion.convert(table, schema, binary_as_bytes=True)


def _describe(exc: BaseException, timed_out: bool = False) -> dict:
    """Exception type, Spark error condition and a short message without stack noise."""
    condition = None
    for getter in ("getCondition", "getErrorClass"):
        if hasattr(exc, getter):
            try:
                condition = getattr(exc, getter)()
            except Exception:  # noqa: BLE001
                condition = None
            if condition:
                break
    message = str(exc).split("\n\nJVM stacktrace:")[0].strip()
    if isinstance(exc, SyntaxError):
        message = f"{exc.msg} (line {exc.lineno})"
    elif not message:
        message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return {"type": type(exc).__name__, "condition": condition, "message": message[:2000],
            "timed_out": timed_out, "grpc_status": _grpc_status(exc)}


def _grpc_status(exc: BaseException) -> str | None:
    """The gRPC status name of a Connect transport error (``UNAVAILABLE`` when the server is
    gone), else None. Only pyspark's and grpc's own classes count: a candidate cannot make them,
    so it cannot pass its failure off as Spark's."""
    import grpc
    from pyspark.errors.exceptions.connect import SparkConnectGrpcException

    if isinstance(exc, SparkConnectGrpcException):
        return exc.getGrpcStatusCode().name
    if isinstance(exc, grpc.RpcError) and isinstance(exc, grpc.Call):
        return exc.code().name
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fds", required=True, help="IN,OUT file descriptors of the job channel")
    fd_in, fd_out = (int(x) for x in parser.parse_args().fds.split(","))
    reader = os.fdopen(fd_in, "r", encoding="utf-8")
    writer = os.fdopen(fd_out, "w", encoding="utf-8")
    config = json.loads(reader.readline())
    # Confinement comes before any thread exists: setns and Landlock bind the calling thread.
    warnings = []
    if config.get("netns"):
        isolation.enter_network_namespace(config["netns"])
    if config.get("landlock"):
        import landlock  # noqa: F401 - imported before the file system closes

        isolation.restrict_filesystem(config["read_paths"], [config["scratch"]])
    os.chdir(config["scratch"])
    isolation.apply_rlimits(isolation.Limits(**config.get("limits", {})))
    try:
        worker = Worker(config["remote"])
        worker.spark.range(1).collect()  # warm the channel so the first job is not charged for it
    except Exception as exc:  # noqa: BLE001
        writer.write(json.dumps({"ready": False, "error": _describe(exc)}) + "\n")
        writer.flush()
        return
    writer.write(json.dumps({"ready": True, "pid": os.getpid(), "warnings": warnings}) + "\n")
    writer.flush()
    for line in reader:
        job = json.loads(line)
        try:
            reply = worker.run(job)
        except KeyboardInterrupt:  # a watchdog that fired as the job ended
            reply = {"status": "timeout", "error": {"type": "TimeoutError", "condition": None,
                     "message": "timed out", "timed_out": True}, "stdout": ""}
        reply["id"] = job["id"]
        writer.write(json.dumps(reply) + "\n")
        writer.flush()


if __name__ == "__main__":
    main()
