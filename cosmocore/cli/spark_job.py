"""``spark-submit`` entry point: the ``cosmocore`` CLI as a Spark application.

    spark-submit --master local[2] cosmocore/cli/spark_job.py bench --profile smoke --out runs/b
    spark-submit --master yarn --driver-memory 16g cosmocore/cli/spark_job.py \
        train --model smollm2-135m --suite standard --cycles 20 --store s3://bucket/store

Every argument after the script is a ``cosmocore`` command line (same subcommands, flags, exit
status and ``--json`` output). In an installed wheel the script's path is printed by
``python -m cosmocore.cli.spark_job --path``.

What ``--master`` controls, and what it does not:

- The job creates the driver's SparkSession from spark-submit's settings (``--master``,
  ``--conf``, ``--driver-memory``...) and leaves it active, so anything that uses the active
  session uses that one.
- Candidate code never runs in that session. It runs in the sandbox's worker processes on the
  driver node, as Spark Connect clients of, in this order of preference:
  1. ``--spark-remote sc://host:port`` when given (any Connect server, Databricks included);
  2. the driver's own Connect endpoint, when the job is submitted with
     ``--conf spark.plugins=org.apache.spark.sql.connect.SparkConnectPlugin`` (bind it to
     loopback: ``--conf spark.connect.grpc.binding.address=127.0.0.1``). Candidates' Spark jobs
     then run on ``--master``'s executors. That server lives in the driver JVM, so it is *not*
     confined the way the embedded one is (no network namespace, no Landlock): the AST policy and
     the worker limits still hold, the server-side confinement does not (see docs/SECURITY.md);
  3. otherwise the embedded default: a confined local Connect server on the driver node, whatever
     ``--master`` says.
- Output: spark-submit runs this script with its stdout and stderr merged into spark-submit's
  stdout (Spark's PythonRunner does that), so progress and logs share it with the result; with
  ``--json`` the JSON object is the last line. Spark's own log goes to spark-submit's stderr.
- Model generation and training run in this driver process (its CPU or GPU); ``--master`` does not
  distribute them. The Delta store is written by delta-rs from the driver, wherever ``--store``
  points.
"""
from __future__ import annotations

import sys
from pathlib import Path

CONNECT_PLUGIN = "org.apache.spark.sql.connect.SparkConnectPlugin"
#: Subcommands (by their first words) that run candidates and so accept ``--spark-remote``.
_RUNS_SPARK = {("tasks", "list"), ("tasks", "verify"), ("run",), ("solve",), ("train",), ("bench",)}


def driver_session():
    """The driver's SparkSession as spark-submit configured it (created if needed)."""
    from pyspark.sql import SparkSession

    return SparkSession.getActiveSession() or SparkSession.builder.appName("cosmocore").getOrCreate()


def driver_connect_endpoint(spark) -> str | None:
    """``sc://`` URL of the Connect server running inside the driver, if the plugin is on."""
    conf = spark.sparkContext.getConf()
    plugins = [p.strip() for p in conf.get("spark.plugins", "").split(",")]
    if CONNECT_PLUGIN not in plugins:
        return None
    host = conf.get("spark.connect.grpc.binding.address", "127.0.0.1") or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"sc://{host}:{conf.get('spark.connect.grpc.binding.port', '15002')}"


def with_remote(argv: list[str], remote: str | None) -> list[str]:
    """``argv`` plus ``--spark-remote REMOTE`` where the subcommand takes it and none was given."""
    if remote is None or any(a == "--spark-remote" or a.startswith("--spark-remote=") for a in argv):
        return argv
    words = tuple(a for a in argv[:2] if not a.startswith("-"))
    if not any(words[: len(cmd)] == cmd for cmd in _RUNS_SPARK):
        return argv
    return [*argv, "--spark-remote", remote]


def main(argv: list[str] | None = None) -> None:
    """Run one ``cosmocore`` command line inside a Spark application; exits with its status."""
    import logging

    from cosmocore.cli import commands
    from cosmocore.cli.common import err

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--path"]:
        print(Path(__file__).resolve())
        return
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    spark = driver_session()
    spark.sparkContext.setLogLevel("WARN")  # keep stderr for the command's own progress
    remote = driver_connect_endpoint(spark)
    if remote:
        err.print(f"candidates run on the driver's Spark Connect endpoint {remote} "
                  f"(master {spark.sparkContext.master})", markup=False)
    try:
        commands.app(args=with_remote(argv, remote), prog_name="spark_job.py")
    finally:
        spark.stop()


if __name__ == "__main__":
    # Run as a script path (spark-submit's way), Python puts this file's folder first on sys.path,
    # where cosmocore's own modules would shadow top-level names: import from the project instead.
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if not p or str(Path(p).resolve()) != here]
    try:
        import cosmocore  # noqa: F401 - installed (wheel or editable)
    except ImportError:
        sys.path.insert(0, str(Path(here).parents[1]))
    main()
