"""``cosmocore tasks ...``: list, show and verify a suite's tasks, and import your own DataFrame
function as a new suite family."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from cosmocore.cli.common import SPARK_REMOTE_HELP, err, find_task as _find_task, progress_bar as _progress
from cosmocore.cli.common import sandbox as _sandbox, verified_tasks as _verified_tasks
from cosmocore.cli.errors import BadInput, emit as _emit, errors as _errors

tasks_app = typer.Typer(no_args_is_help=True, help="Browse and verify Mini-World task suites.")


@tasks_app.command("list")
def tasks_list(
    suite: str = typer.Option("standard", help="suite name (tasks/NAME.yaml) or path to a suite YAML"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
    wide: bool = typer.Option(False, "--wide", help="plain tab-separated lines, nothing cut (the default when "
                              "stdout is not a terminal)"),
    spark_remote: Optional[str] = typer.Option(None, help=SPARK_REMOTE_HELP),
) -> None:
    """List the verified tasks of a suite."""
    with _errors(json_out):
        s, tasks = _verified_tasks(suite, spark_remote)
        if json_out:
            _emit({"suite": s.name, "tasks": [t.summary() for t in tasks]})
            return
        if wide or not sys.stdout.isatty():  # for scripts and pipes: one line a task, ids whole
            sys.stdout.write("".join(f"{t.id}\t{t.family}\t{t.bug_class}\t{t.split}\n" for t in tasks))
            return
        table = Table(title=f"suite {s.name}: {len(tasks)} tasks")
        table.add_column("id", no_wrap=True)  # an id is copied into --task: never cut or folded
        for col in ("family", "bug_class", "split"):
            table.add_column(col)
        for t in tasks:
            table.add_row(t.id, t.family, t.bug_class, t.split)
        Console().print(table)


@tasks_app.command("show")
def tasks_show(
    task_id: str = typer.Argument(..., help="task id, e.g. orders_enrichment.join_type.0"),
    suite: Optional[str] = typer.Option(None, help="suite to look in (default: every suite)"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Show one task: spec, inputs, buggy and reference code."""
    with _errors(json_out):
        from miniworld.suites import catalog

        s, task = _find_task(task_id, suite)
        cached = catalog.load_cached(s)
        verified = None if cached is None else any(t.id == task.id for t in cached)
        payload = {**s.kind.describe(task), "suite": s.name, "verified": verified}
        if json_out:
            _emit(payload)
            return
        out = Console(soft_wrap=True)  # code verbatim: a long line is not re-wrapped into broken indentation
        out.rule(f"{task.id}  [{task.split}]")
        out.print(task.spec, markup=False, highlight=False)
        for name, ddl in task.inputs.items():
            out.print(f"  {name}: {ddl}", markup=False, highlight=False)
        out.rule("buggy code")
        out.print(task.buggy_code, markup=False, highlight=False)
        out.rule("reference code")
        out.print(task.reference_code, markup=False, highlight=False)


@tasks_app.command("verify")
def tasks_verify(
    suite: str = typer.Option("standard", help="suite name or path to a suite YAML"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
    spark_remote: Optional[str] = typer.Option(None, help=SPARK_REMOTE_HELP),
) -> None:
    """Run every reference and mutant on Spark; keep observable tasks; cache the result."""
    with _errors(json_out):
        from miniworld.suites import catalog

        s = catalog.load_suite(suite)
        with _sandbox(spark_remote, kind=s.kind) as box, _progress() as bar:
            job = bar.add_task(f"verifying {s.name}", total=None)
            report = catalog.verify(s, box, lambda done, total: bar.update(job, completed=done, total=total))
        path = catalog.save_cache(s, report, catalog.generate(s))
        payload = report.to_json(s)
        if json_out:
            _emit(payload)
        else:
            err.print(f"suite {s.name}: {payload['tasks']} tasks verified over {payload['families']} families "
                      f"and {payload['bug_classes']} bug classes ({payload['train']} train, {payload['eval']} eval); "
                      f"{payload['discarded_unobservable']} unobservable mutants discarded; cache {path}")
            for failure in report.failures:
                err.print(f"failure: {failure}", markup=False)
        if report.failures:
            raise typer.Exit(1)


@tasks_app.command("import")
def tasks_import(
    file: Path = typer.Argument(..., help="Python file with your PySpark transformation (parsed, never executed here)"),
    function: Optional[str] = typer.Option(None, help="function to import (default: the only DataFrame function)"),
    suite: str = typer.Option("imported", help="suite NAME (in $COSMOCORE_SUITES or ~/.local/share/cosmocore/suites) "
                              "or a path ending in .yaml"),
    sample: list[str] = typer.Option([], "--sample", help="ARG=FILE (.csv/.json/.parquet): real rows, and the "
                                     "schema, of one DataFrame parameter (repeatable)"),
    force: bool = typer.Option(False, "--force", help="replace the family if the suite already has it"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
    spark_remote: Optional[str] = typer.Option(None, help=SPARK_REMOTE_HELP),
) -> None:
    """Turn your own DataFrame function into tasks: inject bugs, keep the observable ones, write a suite."""
    with _errors(json_out):
        from miniworld.suites import importer, user_suites

        samples = {}
        for item in sample:
            arg, sep, path = item.partition("=")
            if not sep or not arg or not path:
                raise BadInput(f"--sample {item!r}: expected ARG=FILE")
            samples[arg.strip()] = Path(path)
        try:
            analysis = importer.analyse(file, function, samples)
            family = importer.build_family(analysis, f"{file.name}:{analysis.function}")
        except importer.PipelineImportError as exc:
            raise BadInput(str(exc), input=str(file)) from None
        user_suites.check_target(suite, family.FAMILY, force)  # before Spark starts
        with _sandbox(spark_remote) as box, _progress() as bar:
            job = bar.add_task(f"verifying mutants of {analysis.function}", total=None)
            result = user_suites.import_family(analysis, family, suite, box, force,
                                               lambda done, total: bar.update(job, completed=done, total=total))
        payload = result.to_json()
        if json_out:
            _emit(payload)
            return
        classes = ", ".join(f"{c} {n}" for c, n in payload["bug_classes"].items())
        err.print(f"{payload['function']}: {payload['tasks']} tasks ({payload['train']} train, {payload['eval']} eval) "
                  f"over {len(payload['bug_classes'])} bug classes [{classes}]; "
                  f"{payload['discarded_unobservable']} unobservable mutants discarded", markup=False)
        ref = suite if suite.endswith((".yaml", ".yml")) else payload["suite"]
        err.print(f"suite {payload['suite']!r} written to {payload['path']}: try `cosmocore tasks list --suite "
                  f"{ref}` or `cosmocore bench --suite {ref}`", markup=False)
