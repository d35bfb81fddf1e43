"""The ``cosmocore`` command line (contract in DESIGN.md: commands, ``--json``, exit codes).

Exit status: 0 done; 2 bad input (one line naming it); 1 internal error. ``--json`` prints one
JSON object on stdout and nothing else there; logs and progress go to stderr.

Here: the app, ``run``, ``solve`` and ``train``; the other commands live in their own modules
(``tasks_cli``, ``buffer_cli``, ``bench_cli``) and are registered on this app below.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from cosmocore.cli.bench_cli import bench, report
from cosmocore.cli.buffer_cli import buffer_app
from cosmocore.cli.common import SPARK_REMOTE_HELP, check_remote as _check_remote, err, find_task as _find_task
from cosmocore.cli.common import progress_bar as _progress, sandbox as _sandbox, verified_tasks as _verified_tasks
from cosmocore.cli.errors import BadInput, emit as _emit, errors as _errors, line as _line
from cosmocore.cli.tasks_cli import tasks_app

app = typer.Typer(add_completion=False, no_args_is_help=True, help="CosmoCore Mini-World: PySpark bug tasks and affective replay.")
app.add_typer(tasks_app, name="tasks")
app.add_typer(buffer_app, name="buffer", help="Inspect the replay buffer of a store.")


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
        from miniworld.env import MiniWorldEnv  # gymnasium and the sandbox: loaded when a command runs

        try:  # the kind decides what of a file as written runs (PySpark: only the transformation)
            code, note = s.kind.prepare_user_file(code, function)
        except ValueError as exc:
            raise BadInput(f"{file}: {exc}", input=str(file)) from None
        if note:
            err.print(f"{file}: {note}", markup=False)
        with _sandbox(spark_remote, timeout, kind=s.kind) as box:
            _, tasks = _verified_tasks(s.source, spark_remote, box)
            verified = next((t for t in tasks if t.id == found.id), None)
            if verified is None:
                raise BadInput(f"task {task!r} was discarded by verification (its bug is not observable)")
            with MiniWorldEnv(tasks, box, split=None, max_turns=1) as env:  # one turn of the env's episode
                env.reset(options={"task_id": verified.id})
                env.step(code)
                result = env.last_results[0]
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
        if turns < 1:
            raise BadInput(f"--turns must be >= 1, got {turns}")
        s, found = _find_task(task, suite)
        from cosmocore.model.policy import Policy, PolicyError  # torch and the model: loaded once input is good
        from miniworld.env import MiniWorldEnv
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
            # the env's episode: its step runs the reply and writes the next turn's prompt
            env = MiniWorldEnv(tasks, box, split=None, max_turns=turns)
            _, info = env.reset(options={"task_id": verified.id})
            for turn in range(1, turns + 1):
                with err.status(f"turn {turn}: generating..."):
                    gen = policy.generate([info["messages"]], max_new_tokens=max_new_tokens, greedy=greedy)[0]
                _, reward, terminated, truncated, info = env.step(gen.text)
                result = env.last_results[0]
                attempts.append({"turn": turn, "code": info["code"], "outcome": result.outcome, "reward": reward,
                                 "checks_passed": result.checks_passed, "checks_total": result.checks_total,
                                 "error": result.error, "feedback": result.feedback, "completion": gen.text})
                if not json_out:
                    out = Console()
                    colour = "green" if result.outcome == "correct" else "red"
                    out.rule(f"turn {turn}: [{colour}]{result.outcome}[/] reward {reward:.3f}")
                    out.print(info["code"], markup=False)
                    out.print(result.feedback, markup=False)
                if terminated or truncated:
                    break
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
        from cosmocore.model.generation import PolicyError
        from cosmocore.memory.store import StoreError
        from cosmocore.train.config import TrainConfig
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
        from cosmocore.train.trainer import Trainer, cycle_line  # torch and the model code: loaded once input is good

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


# After run, solve and train: ``--help`` lists commands in the order they were registered.
app.command("bench")(bench)
app.command("report")(report)


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
