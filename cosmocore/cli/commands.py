"""The ``cosmocore`` command line (contract in DESIGN.md: commands, ``--json``, exit codes).

Exit status: 0 done; 2 bad input (one line naming it); 1 internal error. ``--json`` prints one
JSON object on stdout and nothing else there; logs and progress go to stderr.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from cosmocore.cli.buffer_cli import buffer_app
from cosmocore.cli.errors import BadInput, emit as _emit, errors as _errors, line as _line

app = typer.Typer(add_completion=False, no_args_is_help=True, help="CosmoCore Mini-World: PySpark bug tasks and affective replay.")
tasks_app = typer.Typer(no_args_is_help=True, help="Browse and verify Mini-World task suites.")
app.add_typer(tasks_app, name="tasks")
app.add_typer(buffer_app, name="buffer", help="Inspect the replay buffer of a store.")

err = Console(stderr=True)
SPARK_REMOTE_HELP = "Spark Connect server to run candidates on (sc://host:port); default: a local one"


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=err, transient=False)


def _sandbox(spark_remote: Optional[str], timeout_s: float = 30.0, kind=None):
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


def _check_remote(spark_remote: Optional[str]) -> None:
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


def _verified_tasks(suite_name: str, spark_remote: Optional[str], box=None):
    """Verified tasks of a suite, verifying (and caching) on first use, on ``box`` if given."""
    from miniworld.suites import catalog

    suite = catalog.load_suite(suite_name)
    cached = catalog.load_cached(suite)
    if cached is not None:
        return suite, cached
    err.print(f"suite {suite.name!r} is not verified on this machine yet: verifying it once (cached after)")
    own = box is None
    box = box or _sandbox(spark_remote, kind=suite.kind)
    try:
        with _progress() as bar:
            job = bar.add_task(f"verifying {suite.name}", total=None)
            report = catalog.verify(suite, box, lambda done, total: bar.update(job, completed=done, total=total))
    finally:
        if own:
            box.close()
    catalog.save_cache(suite, report, catalog.generate(suite))
    return suite, report.kept


def _find_task(task_id: str, suite_name: Optional[str]):
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


@app.command("run")
def run(
    file: Path = typer.Argument(..., help="Python file: your pipeline as written (its __main__ block, SparkSession "
                                "builder and unused helpers are not run), or a bare transform(...)"),
    task: str = typer.Option(..., "--task", help="task id"),
    function: Optional[str] = typer.Option(None, help="the function to run as the task's transform (default: "
                                           "transform, else the file's one DataFrame function)"),
    suite: Optional[str] = typer.Option(None, help="suite the task belongs to (default: search all)"),
    timeout: float = typer.Option(30.0, help="wall-clock limit for the candidate, seconds"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
    spark_remote: Optional[str] = typer.Option(None, help=SPARK_REMOTE_HELP),
) -> None:
    """Run a candidate program on a task and score it (a failing candidate is not an error)."""
    with _errors(json_out):
        if timeout <= 0:
            raise BadInput(f"--timeout must be positive, got {timeout}")
        try:
            code = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"cannot read candidate file {str(file)!r}: "
                           f"{exc.strerror if isinstance(exc, OSError) else exc}", input=str(file))
        s, found = _find_task(task, suite)
        if s.kind.name == "pyspark":  # a user's script as written: only its transformation runs
            from miniworld.sandbox.userfile import UserFileError, prepare

            try:
                prepared = prepare(code, function)
            except UserFileError as exc:
                raise BadInput(f"{file}: {exc}", input=str(file)) from None
            if prepared.stripped or prepared.function != "transform":
                err.print(f"running {prepared.function}() from {file}; not run: the script around it "
                          f"(statements at lines {', '.join(map(str, prepared.stripped)) or '-'})", markup=False)
            code = prepared.code
        with _sandbox(spark_remote, timeout, kind=s.kind) as box:
            _, tasks = _verified_tasks(s.source, spark_remote, box)
            verified = next((t for t in tasks if t.id == found.id), None)
            if verified is None:
                raise BadInput(f"task {task!r} was discarded by verification (its bug is not observable)")
            result = box.evaluate(verified, code, timeout)
        if json_out:
            _emit(result.to_json())
            return
        colour = "green" if result.outcome == "correct" else "red"
        Console().print(f"[{colour}]{result.outcome}[/] reward {result.reward:.3f} "
                        f"({result.checks_passed}/{result.checks_total} checks) in {result.duration_s:.2f}s")
        Console().print(result.feedback, markup=False)


@app.command("solve")
def solve(
    task: str = typer.Option(..., "--task", help="task id"),
    model: str = typer.Option("smollm2-135m", help="smollm2-135m, tiny, or a Hugging Face id / local path"),
    turns: int = typer.Option(2, help="attempts, each after the feedback of the last"),
    suite: Optional[str] = typer.Option(None, help="suite the task belongs to (default: search all)"),
    greedy: bool = typer.Option(True, help="greedy decoding (else sample at --temperature)"),
    temperature: float = typer.Option(0.9, help="sampling temperature when not greedy"),
    max_new_tokens: int = typer.Option(256, help="generation budget per attempt"),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:N (default: cuda when present)"),
    seed: int = typer.Option(0, help="seed for sampling"),
    engine: str = typer.Option("hf", help="rollout engine: hf, torch (faster on a CPU, same greedy tokens), vllm (CUDA)"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
    spark_remote: Optional[str] = typer.Option(None, help=SPARK_REMOTE_HELP),
) -> None:
    """Let a model try a task with self-correction turns; show each attempt and its outcome."""
    with _errors(json_out):
        from cosmocore.model.policy import Policy, PolicyError
        from miniworld.kinds.registry import messages

        if turns < 1:
            raise BadInput(f"--turns must be >= 1, got {turns}")
        s, found = _find_task(task, suite)
        try:
            with err.status(f"loading model {model}..."):
                policy = Policy.load(model, device=device, seed=seed, temperature=temperature)
                policy.use_engine(engine)
        except (PolicyError, ValueError) as exc:
            raise BadInput(str(exc))
        attempts: list[dict] = []
        with _sandbox(spark_remote, kind=s.kind) as box:
            _, tasks = _verified_tasks(s.source, spark_remote, box)
            verified = next((t for t in tasks if t.id == found.id), None)
            if verified is None:
                raise BadInput(f"task {task!r} was discarded by verification (its bug is not observable)")
            history: list[tuple[str, str]] = []
            for turn in range(1, turns + 1):
                with err.status(f"turn {turn}: generating..."):
                    gen = policy.generate([messages(verified, history)], max_new_tokens=max_new_tokens, greedy=greedy)[0]
                result = box.evaluate(verified, gen.code)
                attempts.append({"turn": turn, "code": gen.code, "outcome": result.outcome, "reward": result.reward,
                                 "checks_passed": result.checks_passed, "checks_total": result.checks_total,
                                 "error": result.error, "feedback": result.feedback, "completion": gen.text})
                if not json_out:
                    out = Console()
                    colour = "green" if result.outcome == "correct" else "red"
                    out.rule(f"turn {turn}: [{colour}]{result.outcome}[/] reward {result.reward:.3f}")
                    out.print(gen.code, markup=False)
                    out.print(result.feedback, markup=False)
                if result.outcome == "correct":
                    break
                history.append((gen.code, result.feedback))
        if json_out:
            _emit({"task": verified.id, "model": model, "attempts": attempts})


@app.command("train")
def train(
    model: str = typer.Option("smollm2-135m", help="smollm2-135m, tiny, or a Hugging Face id / local path"),
    arm: str = typer.Option("cosmocore", help="uniform, cosmocore, no_prioritization, no_pruning, cocos"),
    suite: str = typer.Option("standard", help="task suite"),
    cycles: int = typer.Option(10, help="day + night + eval cycles"),
    seed: int = typer.Option(0, help="seed for tasks, sampling, init and replay"),
    store: str = typer.Option("./store", help="Delta store URI"),
    out: str = typer.Option("./runs/train", help="checkpoint and summary directory"),
    resume: bool = typer.Option(False, help="continue from the checkpoint in --out"),
    episodes_per_cycle: int = typer.Option(16, help="practice tasks attempted per day phase"),
    turns: int = typer.Option(2, help="attempts per task in the day phase"),
    max_new_tokens: int = typer.Option(256, help="generation budget per attempt"),
    nocturnal_steps: int = typer.Option(4, help="optimizer steps per night"),
    minibatch: int = typer.Option(8, help="episodes per nocturnal minibatch"),
    lr: float = typer.Option(1e-5, help="Adam learning rate"),
    eval_tasks: int = typer.Option(0, help="held-out tasks scored (0 = all of the split)"),
    eval_split: str = typer.Option("test", help="held-out split scored: test (headline figures) or dev (tuning)"),
    practice_tasks: int = typer.Option(12, help="train tasks the run practises (scored every cycle)"),
    warmup_sft: int = typer.Option(0, help="supervised warm-start steps on train-split (buggy -> reference) pairs"),
    lora: Optional[bool] = typer.Option(None, "--lora/--no-lora", help="LoRA adapters (default: on above ~1B parameters)"),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:N (default: cuda when present)"),
    engine: str = typer.Option("hf", help="rollout engine: hf, torch (faster on a CPU, same greedy tokens), vllm (CUDA)"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object (the final summary)"),
    spark_remote: Optional[str] = typer.Option(None, help=SPARK_REMOTE_HELP),
) -> None:
    """Train a policy: day phase (rollouts), nocturnal phase (replay + PPO), evaluation."""
    with _errors(json_out):
        from cosmocore.model.policy import PolicyError
        from cosmocore.memory.store import StoreError
        from cosmocore.train.trainer import Trainer, TrainConfig, cycle_line
        from miniworld.suites import catalog

        catalog.load_suite(suite)  # an unknown suite is refused before a store or run folder exists
        _check_remote(spark_remote)  # a dead server is refused before a store or run folder exists
        try:
            cfg = TrainConfig(model=model, arm=arm, suite=suite, cycles=cycles, seed=seed, store=store, out=out,
                              episodes_per_cycle=episodes_per_cycle, turns=turns, max_new_tokens=max_new_tokens,
                              nocturnal_steps=nocturnal_steps, minibatch=minibatch, lr=lr, eval_tasks=eval_tasks,
                              eval_split=eval_split, practice_tasks=practice_tasks, warmup_sft=warmup_sft, lora=lora,
                              device=device, spark_remote=spark_remote, engine=engine)
        except ValueError as exc:
            raise BadInput(str(exc))
        bar = _progress()
        phases: dict[str, int] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in phases:
                phases[phase] = bar.add_task(phase, total=total)
            bar.update(phases[phase], completed=done, total=total)

        try:
            with err.status(f"loading model {model}, Spark and the {suite} suite..."):
                trainer = Trainer(cfg, progress)
        except (PolicyError, StoreError) as exc:
            raise BadInput(str(exc))
        try:
            if resume and trainer.resume():
                err.print(f"resumed {trainer.cfg.run_id} at cycle {trainer.cycle}")
            cycles_bar = bar.add_task("cycles", total=cfg.cycles, completed=max(trainer.cycle - 1, 0))

            def on_cycle(r: dict) -> None:
                bar.update(cycles_bar, completed=r["cycle"])
                line = cycle_line(r)
                bar.console.print(f"{line}, {r['wall_s']:.0f}s", markup=False, highlight=False, soft_wrap=True)

            with bar:
                summary = trainer.train(on_cycle)
        finally:
            trainer.close()
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "summary.json").write_text(json.dumps(summary, default=str, indent=2))
        if json_out:
            _emit({k: v for k, v in summary.items() if k != "history"})
        else:
            err.print(f"run {summary['run_id']}: {summary['cycles_completed']} cycles, {summary['episodes']} episodes, "
                      f"final practice errors {summary['final_practice_errors']}, final {cfg.eval_split} hallucination "
                      f"rate {summary['final_hallucination_rate']}; checkpoint {summary['checkpoint']}")


def _with_engine(train: dict, engine: str | None) -> dict:
    """``--engine`` as the trainer setting it is (checked here: bad input before anything is written)."""
    if engine is None:
        return train
    from cosmocore.model.generation import check_engine

    try:
        check_engine(engine)
    except ValueError as exc:
        raise BadInput(f"--engine: {exc}")
    return {**train, "engine": engine}


@app.command("bench")
def bench(
    profile: str = typer.Option("quick", help="smoke (tiny model, seconds), quick (default model on a CPU, 2 arms x 3 "
                                "seeds, goal under 20 min on 2 cores), verdict (3 arms x 5 seeds, goal under 2 h), "
                                "paper (all arms x 5 seeds, for a GPU node); --plan shows one"),
    arms: Optional[str] = typer.Option(None, help="comma-separated arms (default: the profile's)"),
    seeds: Optional[int] = typer.Option(None, help="number of seeds, 0..N-1 (default: the profile's)"),
    cycles: Optional[int] = typer.Option(None, help="training cycles per run (default: the profile's)"),
    model: Optional[str] = typer.Option(None, help="policy model (default: the profile's)"),
    suite: Optional[str] = typer.Option(None, help="task suite (default: the profile's)"),
    store: Optional[str] = typer.Option(None, help="Delta store URI (default: OUT/store)"),
    out: Optional[Path] = typer.Option(None, help="run directory (default: runs/bench-PROFILE-TIME)"),
    resume: Optional[Path] = typer.Option(None, help="continue the bench in this run directory"),
    jobs: Optional[int] = typer.Option(None, help="(arm, seed) runs trained in parallel processes (default: the "
                                       "profile's: 2 for quick, else 1)"),
    target: float = typer.Option(0.0, help="eval hallucination rate that counts as zero error"),
    set_: list[str] = typer.Option([], "--set", help="trainer setting KEY=VALUE (repeatable), e.g. --set lr=2e-5"),
    eval_split: Optional[str] = typer.Option(None, help="held-out split scored: test (default; the headline "
                                             "figures) or dev (where settings are chosen)"),
    plan: bool = typer.Option(False, "--plan", help="print the resolved design and estimated wall time; run nothing"),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:N (default: cuda when present)"),
    engine: Optional[str] = typer.Option(None, help="rollout engine: hf, torch, vllm (default: the profile's)"),
    keep_checkpoints: bool = typer.Option(False, help="keep each finished run's checkpoint (GBs on real models)"),
    mlflow: bool = typer.Option(False, "--mlflow", help="log to MLflow (also when MLFLOW_TRACKING_URI is set)"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object (where the report is, and its headline)"),
    spark_remote: Optional[str] = typer.Option(None, help=SPARK_REMOTE_HELP),
) -> None:
    """Train every (arm, seed) of a profile, then write the bug-recurrence report."""
    import os

    with _errors(json_out):
        from cosmocore.bench import bench as b
        from cosmocore.model.policy import PolicyError
        from cosmocore.memory.store import StoreError
        from cosmocore.train.trainer import cycle_line

        _check_remote(spark_remote)  # a dead server is refused before a store or run folder exists
        use_mlflow = mlflow or bool(os.environ.get("MLFLOW_TRACKING_URI"))
        if use_mlflow:
            _mlflow_module()  # fail now, not after an hour of training
        try:
            if resume is not None:
                given = {"--profile": profile != "quick", "--arms": arms, "--seeds": seeds, "--cycles": cycles,
                         "--model": model, "--suite": suite, "--store": store, "--out": out, "--set": set_,
                         "--target": target != 0.0, "--device": device, "--engine": engine}
                given.update({"--eval-split": eval_split, "--plan": plan})
                clash = [k for k, v in given.items() if v]
                if clash:
                    raise BadInput(f"--resume continues the bench as it was started; drop {', '.join(clash)}")
                run_dir = resume
                cfg = b.load(run_dir)
            else:
                overrides = {**b.parse_set(set_), **({"eval_split": eval_split} if eval_split else {})}
                cfg = b.resolve(profile, arms=[a.strip() for a in arms.split(",") if a.strip()] if arms else None,
                                seeds=seeds, cycles=cycles, model=model, suite=suite, store=store, target=target,
                                device=device, train=_with_engine(overrides, engine),
                                keep_checkpoints=keep_checkpoints)
                if plan:
                    _show_plan(cfg, b.default_jobs(profile) if jobs is None else jobs, json_out)
                    return
                from miniworld.suites import catalog

                catalog.load_suite(cfg.suite)  # an unknown suite is refused before the run folder exists
                run_dir = out or Path("runs") / f"bench-{cfg.bench_id}"
                b.create(cfg, run_dir)
            err.print(f"bench {cfg.bench_id}: {cfg.model} on {cfg.suite}, arms {','.join(cfg.arms)}, "
                      f"{len(cfg.seeds)} seed(s), {cfg.cycles} cycles; run directory {run_dir}")
            bar = _progress()
            total = bar.add_task("bench (training cycles)", total=len(cfg.runs()) * cfg.cycles)
            done: dict[str, int] = {}
            phases: dict[str, int] = {}

            def progress(key: str, phase: str, n: int, of: int) -> None:
                if phase == "cycle":
                    done[key] = n
                    bar.update(total, completed=sum(done.values()))
                    return
                if phase not in phases:
                    phases[phase] = bar.add_task(phase, total=of)
                bar.update(phases[phase], completed=n, total=of, description=f"{key} {phase}")

            def on_record(key: str, r: dict) -> None:
                line = f"{key} {cycle_line(r)}"
                bar.console.print(f"{line}, {r['wall_s']:.0f}s", markup=False, highlight=False, soft_wrap=True)

            with bar:
                b.run_bench(cfg, run_dir, progress, jobs=jobs, spark_remote=spark_remote, on_record=on_record)
        except b.BenchError as exc:
            raise BadInput(str(exc))
        except (PolicyError, StoreError) as exc:
            raise BadInput(str(exc))
        except KeyboardInterrupt:
            _line(f"interrupted: continue with `cosmocore bench --resume {run_dir}` (finished runs are kept)")
            raise typer.Exit(130)
        _write_report(run_dir, use_mlflow, json_out)


def _show_plan(cfg, jobs: int, json_out: bool) -> None:
    from cosmocore.bench.plan import plan

    design = plan(cfg, jobs)
    if json_out:
        _emit(design)
        return
    out = Console()
    wall = design["estimated_wall_s"]
    out.print(f"{design['profile']}: {design['model']} on {design['suite']}; arms {', '.join(design['arms'])}; "
              f"{design['seeds']} seeds x {design['cycles']} cycles in {jobs} job(s)")
    out.print(f"tasks: {design['train_tasks']} train ({design['practice_tasks']} practised per run, scored every "
              f"cycle), {design['dev_tasks']} dev, {design['test_tasks']} test; {design['eval_split']} scored at "
              f"cycles {design['held_out_cycles']} ({design['held_out_scored']} tasks, "
              f"{design['samples_per_task']} sample each)")
    out.print(f"work: {design['work']}")
    out.print(f"estimated wall time: {f'{wall / 60:.1f} min' if wall is not None else 'unknown'} "
              f"(cost model: {design['cost_model']})")


@app.command("report")
def report(
    run_dir: Path = typer.Argument(..., help="a bench run directory"),
    mlflow: bool = typer.Option(False, "--mlflow", help="also log the bench to MLflow"),
    json_out: bool = typer.Option(False, "--json", help="print report.json on stdout"),
) -> None:
    """(Re)write a bench's report.json, report.md, report.html and plots from its store."""
    with _errors(json_out):
        from cosmocore.bench import bench as b

        try:
            b.load(run_dir)
        except b.BenchError as exc:
            raise BadInput(str(exc))
        if mlflow:
            _mlflow_module()
        _write_report(run_dir, mlflow, json_out)


def _mlflow_module():
    from cosmocore.report import mlflow_log

    try:
        mlflow_log.require()
    except mlflow_log.MlflowMissing as exc:
        raise BadInput(str(exc))
    return mlflow_log


def _write_report(run_dir: Path, use_mlflow: bool, json_out: bool) -> None:
    from cosmocore.report import report as r

    with err.status("writing the report..."):
        rep = r.build(run_dir)
    if use_mlflow:
        _mlflow_module().log_bench(run_dir, rep)
    if json_out:
        _emit({"run_dir": str(run_dir), "report": str(run_dir / "report.html"), **rep})
        return
    sys.stderr.write(r.headline(rep) + "\n")  # plain: rich would re-wrap the lines
    err.print(f"report: {run_dir / 'report.html'} (also report.md, report.json, plots/)", markup=False)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    if "--json" not in sys.argv[1:]:
        app()
        return
    try:  # with --json, a usage error (bad option value, missing argument) is a JSON error too
        status = app(standalone_mode=False)
    except typer.Abort:
        sys.exit(130)
    except typer.TyperException as exc:  # typer's (vendored click's) ClickException and UsageError
        code = int(getattr(exc, "exit_code", 2))
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        _line(f"error: {message}")
        _emit({"error": message, "input": " ".join(sys.argv[1:]), "exit_status": code})
        sys.exit(code)
    sys.exit(status if isinstance(status, int) else 0)


if __name__ == "__main__":
    main()
