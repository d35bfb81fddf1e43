# Databricks notebook source
# MAGIC %md
# MAGIC # The bug-recurrence benchmark
# MAGIC
# MAGIC Trains replay arms side by side (uniform replay, CosmoCore's affective replay, its ablations,
# MAGIC a COCOS-style online baseline) over several seeds on one task suite, then writes the report:
# MAGIC hallucination rate per cycle, cycles to zero error (censored at the cycle budget), bug
# MAGIC recurrence, self-correction, with 95% intervals and the paper's claims checked against the
# MAGIC measured numbers. This is `cosmocore bench` as notebook cells.
# MAGIC
# MAGIC Profiles: `smoke` (tiny random model, seconds: only shows the plumbing), `quick` (the default
# MAGIC model SmolLM2-135M on the `quick` suite: about 18 minutes on a 2-core CPU in 2 parallel jobs), `paper` (all five
# MAGIC arms x 5 seeds on the `standard` suite: size it for a GPU node). Training runs on this driver
# MAGIC (its GPU when it has one); the cluster's executors are not used for it.
# MAGIC
# MAGIC **Parameters** (widgets on Databricks, `COSMOCORE_NOTEBOOK_<NAME>` environment variables
# MAGIC elsewhere; empty means the profile's value): `smoke`, `profile`, `arms` (comma-separated),
# MAGIC `seeds`, `cycles`, `model`, `suite`, `out` (the folder for run directories: a UC volume path
# MAGIC such as `/Volumes/<catalog>/<schema>/<volume>/cosmocore` keeps them), `resume` (a run directory
# MAGIC to continue: finished runs are kept), `spark_remote`, `mlflow_experiment` (log the report and
# MAGIC per-seed curves to MLflow; on Databricks a workspace path such as `/Users/<you>/cosmocore-bench`).

# COMMAND ----------

# MAGIC %md
# MAGIC ## Where candidate code runs
# MAGIC
# MAGIC Every attempt a model makes during training is untrusted code. The sandbox runs it in separate
# MAGIC worker processes on this driver (AST policy, restricted scope, rlimits, deadline, scrubbed
# MAGIC environment), as Spark Connect clients of the **embedded Spark Connect server** the benchmark
# MAGIC starts on the driver: loopback-only in its own network namespace, under Landlock, without
# MAGIC server-side Python, where the OS allows each layer (a missing one is printed as a warning).
# MAGIC The notebook's own `spark` session never runs candidate code.
# MAGIC
# MAGIC With `spark_remote` (`sc://host:port`, for example this cluster's Spark Connect endpoint) the
# MAGIC candidates run there instead, and that server is **not confined**: Spark Connect is not a
# MAGIC security boundary, so code that got past the AST policy could read what the cluster can read
# MAGIC (files, tables, cloud credentials), run Python UDFs on the executors, and reach the network.
# MAGIC The AST policy, the workers' limits and scoring outside the worker still hold. See
# MAGIC `docs/SECURITY.md`.

# COMMAND ----------

from pathlib import Path

from cosmocore.bench import bench
from cosmocore.cli.notebook import Notebook

nb = Notebook(globals())
PROFILE = nb.param("profile", "quick", smoke="smoke", help="smoke, quick or paper")
ARMS = nb.param("arms", None, kind=str, help="comma-separated arms (empty: the profile's)")
SEEDS = nb.param("seeds", None, smoke=1, kind=int, help="seeds 0..N-1 (empty: the profile's)")
CYCLES = nb.param("cycles", None, smoke=1, kind=int, help="training cycles per run (empty: the profile's)")
MODEL = nb.param("model", None, kind=str, help="policy model (empty: the profile's)")
SUITE = nb.param("suite", None, kind=str, help="task suite (empty: the profile's)")
OUT = nb.param("out", nb.default_dir(), help="folder for run directories")
RESUME = nb.param("resume", None, kind=str, help="run directory to continue (empty: a new bench)")
MLFLOW_EXPERIMENT = nb.param("mlflow_experiment", None, kind=str, help="MLflow experiment (empty: no MLflow)")
SPARK_REMOTE = nb.spark_remote()
nb.settings()

if RESUME:
    run_dir = Path(RESUME)
    cfg = bench.load(run_dir)
else:
    cfg = bench.resolve(PROFILE, arms=[a.strip() for a in ARMS.split(",") if a.strip()] if ARMS else None,
                        seeds=SEEDS, cycles=CYCLES, model=MODEL, suite=SUITE)
    run_dir = Path(OUT) / f"bench-{cfg.bench_id}"
    bench.create(cfg, run_dir)
print(f"\nbench {cfg.bench_id}: {cfg.model} on {cfg.suite}, arms {', '.join(cfg.arms)}, {len(cfg.seeds)} seed(s), "
      f"{cfg.cycles} cycle(s) each; run directory {run_dir}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Train every (arm, seed)
# MAGIC
# MAGIC One Spark server serves all runs. The profile says how many train at once: `quick` runs 2
# MAGIC in spawned processes (each with half the driver's cores), the others one after another in
# MAGIC this process; pass `jobs=1` to `run_bench` to keep them here. Each run checkpoints every
# MAGIC cycle: if the cluster restarts, set `resume` to the run directory printed above and run the
# MAGIC notebook again.

# COMMAND ----------

import time

started = time.monotonic()


def progress(key: str, phase: str, done: int, total: int) -> None:
    if phase == "cycle" and done:
        print(f"  {key}: cycle {done}/{total} done ({time.monotonic() - started:.0f}s)", flush=True)


trained = bench.run_bench(cfg, run_dir, progress, jobs=bench.default_jobs(cfg.profile), spark_remote=SPARK_REMOTE)
print(f"trained {len(trained)} run(s) in {time.monotonic() - started:.0f}s: {', '.join(trained) or 'none left'}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## The report
# MAGIC
# MAGIC `report.json`, `report.md`, a self-contained `report.html` and the PNG plots are in the run
# MAGIC directory. The verdict per claim first, then the headline per arm (mean over seeds, 95% interval;
# MAGIC a single seed has no interval), then the plots.

# COMMAND ----------

from cosmocore.report import report
from cosmocore.report.format import fmt, fmt_ci, pct

rep = report.build(run_dir)
print(report.headline(rep))
# the answer first: one verdict per claim (paired difference arm - uniform on the test split)
nb.show([{"claim": c["claim"], "arm": c["arm"], "vs": c["baseline"], "split": c["split"],
          "estimate": fmt(c["estimate"], 3), "95% CI": fmt_ci(c["ci95"], lambda x: fmt(x, 3)),
          "MDE": fmt(c["mde"], 3), "verdict": c["verdict"]} for c in rep["claims"]])
nb.show([{"arm": arm,
          "final hallucination rate": pct(a["final_hallucination_rate"]["mean"]),
          "95% CI": fmt_ci(a["final_hallucination_rate"]["ci95"], pct),
          "test hallucination rate": pct(a["test_hallucination_rate"]["mean"]),
          "practice cycles to zero error (KM median)": fmt(a["practice_cycles_to_zero_error"]["km_median"]),
          "cycles to zero error": fmt(a["cycles_to_zero_error"]["mean"]),
          "censored seeds": f"{a['cycles_to_zero_error']['censored']}/{len(a['seeds'])}",
          "bug recurrence": pct(a["bug_recurrence_rate"]["mean"]),
          "self-correction Δi→c": pct(a["self_correction"]["delta_i_to_c"]["mean"]),
          "entropy": fmt(a["entropy_mean"]["mean"], 3),
          "wall time (s)": fmt(a["wall_time_s"]["total"], 0)} for arm, a in rep["arms"].items()])
if rep["comparisons"]:
    nb.show([{"metric": c["metric"], "arm": c["arm"], "vs": c["baseline"],
              "relative change": pct(c["relative_change"]), "95% CI": fmt_ci(c["ci95"], pct),
              "paper's claim": "" if c.get("paper_claim") is None else pct(c["paper_claim"])}
             for c in rep["comparisons"]])
print(f"report: {run_dir / 'report.html'}")

# COMMAND ----------

nb.show_images(run_dir / rel for rel in rep["plots"].values())

# COMMAND ----------

# MAGIC %md
# MAGIC ## MLflow (optional)
# MAGIC
# MAGIC With `mlflow_experiment` set, the bench is logged as one parent run (settings, headline numbers,
# MAGIC report and plots as artifacts, Delta table versions as tags) with one child run per (arm, seed)
# MAGIC carrying its per-cycle curves. On Databricks it goes to the workspace's tracking server.

# COMMAND ----------

if MLFLOW_EXPERIMENT:
    from cosmocore.report import mlflow_log

    mlflow = mlflow_log.require()
    uri = mlflow.get_tracking_uri() if nb.on_databricks else None  # None: MLFLOW_TRACKING_URI or the run dir
    parent = mlflow_log.log_bench(run_dir, rep, tracking_uri=uri, experiment=MLFLOW_EXPERIMENT)
    print(f"mlflow run {parent} in experiment {MLFLOW_EXPERIMENT!r}")
else:
    print("MLflow logging off (set mlflow_experiment to log this bench)")
