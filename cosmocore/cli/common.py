"""What the commands share: the stderr console and progress bar, the sandbox candidates run in, and
finding a suite's tasks (verified once per machine, then cached).

Spark and the suites are imported inside the functions, so ``cosmocore --help`` stays fast.
"""
from __future__ import annotations

from typing import Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cosmocore.cli.errors import BadInput

err = Console(stderr=True)
SPARK_REMOTE_HELP = "Spark Connect server to run candidates on (sc://host:port); default: a local one"


def progress_bar() -> Progress:
    """A bar on stderr (stdout is kept for ``--json``), left on screen when done."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=err, transient=False)


def sandbox(spark_remote: Optional[str], timeout_s: float = 30.0, kind=None):
    """The sandbox for a suite's task kind (``kind``; None: PySpark), Spark's start shown on stderr."""
    from miniworld.sandbox.spark_sandbox import Sandbox

    if kind is not None and not kind.needs_spark:  # e.g. plain-Python suites (HumanEval): no Spark to start
        return kind.open_sandbox(timeout_s=timeout_s)
    if spark_remote is not None and not spark_remote.startswith("sc://"):
        raise BadInput(f"--spark-remote must look like sc://host:port, got {spark_remote!r}")
    where = f"connecting sandbox workers to {spark_remote}" if spark_remote else \
        "starting Spark (local Connect server and sandbox workers)"
    with err.status(f"{where}..."):
        box = Sandbox(spark_remote=spark_remote, timeout_s=timeout_s)
    for warning in box.warnings:
        err.print(f"warning: {warning}", markup=False)
    return box


def check_remote(spark_remote: Optional[str]) -> None:
    """Refuse a malformed or dead ``--spark-remote`` now, before anything is written."""
    if spark_remote is None:
        return
    if not spark_remote.startswith("sc://"):
        raise BadInput(f"--spark-remote must look like sc://host:port, got {spark_remote!r}", input=spark_remote)
    from miniworld.sandbox.server import probe

    try:
        probe(spark_remote)
    except Exception as exc:  # SparkStartError: say which input
        raise BadInput(str(exc), input=spark_remote) from None


def verified_tasks(suite_name: str, spark_remote: Optional[str], box=None):
    """Verified tasks of a suite, verifying (and caching) on first use, on ``box`` if given."""
    from miniworld.suites import catalog

    suite = catalog.load_suite(suite_name)
    cached = catalog.load_cached(suite)
    if cached is not None:
        return suite, cached
    err.print(f"suite {suite.name!r} is not verified on this machine yet: verifying it once (cached after)")
    own = box is None
    box = box or sandbox(spark_remote, kind=suite.kind)
    try:
        with progress_bar() as bar:
            job = bar.add_task(f"verifying {suite.name}", total=None)
            report = catalog.verify(suite, box, lambda done, total: bar.update(job, completed=done, total=total))
    finally:
        if own:
            box.close()
    catalog.save_cache(suite, report, catalog.generate(suite))
    return suite, report.kept


def find_task(task_id: str, suite_name: Optional[str]):
    """A generated task by id, in the given suite or else in any suite."""
    from miniworld.suites import catalog

    # Task ids repeat across suites (same family, bug class, k): without --suite, the default
    # suite decides, then the others in name order.
    names = [suite_name] if suite_name else sorted(catalog.suite_names(), key=lambda n: (n != "standard", n))
    for name in names:
        try:
            suite = catalog.load_suite(name)
        except catalog.SuiteError:
            if suite_name:
                raise
            continue  # one broken user suite file must not hide every other suite's tasks
        task = suite.kind.find(catalog.generate(suite), task_id)  # HumanEval ids also as HumanEval_0
        if task is not None:
            return suite, task
    where = f"suite {suite_name!r}" if suite_name else "any suite"
    raise BadInput(f"unknown task {task_id!r} (not in {where}; see `cosmocore tasks list`)", input=task_id)
