"""``cosmocore bench`` and ``cosmocore report``: train every (arm, seed) of a profile, then write
(or rewrite) the bug-recurrence report, optionally logged to MLflow."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from cosmocore.cli.common import SPARK_REMOTE_HELP, check_remote as _check_remote, err, progress_bar as _progress
from cosmocore.cli.errors import BadInput, emit as _emit, errors as _errors, line as _line


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
        from cosmocore.model.generation import PolicyError
        from cosmocore.memory.store import StoreError

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

            from cosmocore.train.trainer import cycle_line  # torch and the model code: loaded once input is good

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
