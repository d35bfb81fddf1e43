# Databricks notebook source
# MAGIC %md
# MAGIC # Train one arm: Delta store on cloud storage, MLflow tracking
# MAGIC
# MAGIC One training run of one replay arm (`cosmocore`, `uniform`, `no_prioritization`, `no_pruning`,
# MAGIC `cocos`), cycle by cycle: a **day phase** (the policy attempts train tasks, with a
# MAGIC self-correction turn after the sandbox's feedback; every attempt is tagged with valence and
# MAGIC arousal and appended to the Delta `episodes` table), a **nocturnal phase** (PPO-style clipped
# MAGIC policy gradient on replayed minibatches: 80% Dream Queue, 20% uniform for `cosmocore`) and an
# MAGIC **evaluation** on the held-out split (the `evaluations` table). Cycle 0 is the evaluation before
# MAGIC any training. This is `cosmocore train` as notebook cells; as a scheduled job use the wheel task
# MAGIC in `docs/DATABRICKS.md`.
# MAGIC
# MAGIC **The store** (`store`) holds the Delta tables and is written by delta-rs from this driver:
# MAGIC
# MAGIC * a Unity Catalog volume path, `/Volumes/<catalog>/<schema>/<volume>/cosmocore/store`;
# MAGIC * a cloud URI, `s3://bucket/prefix/store`, `abfss://container@account.dfs.core.windows.net/store`,
# MAGIC   `gs://bucket/store`: delta-rs takes credentials from the environment (`AWS_*`, `AZURE_*`,
# MAGIC   `GOOGLE_*`); on S3 it also needs a locking provider for concurrent writers, or
# MAGIC   `AWS_S3_ALLOW_UNSAFE_RENAME=true` when this run is the only writer;
# MAGIC * empty: `<out>/store` on the driver's local disk (lost with the cluster).
# MAGIC
# MAGIC The tables are plain Delta at the minimal protocol: the notebook's `spark` reads them
# MAGIC (`spark.read.format("delta").load(...)`), as the last cells do.
# MAGIC
# MAGIC **MLflow**: when `mlflow` is importable (it is on Databricks) the run's settings, every cycle's
# MAGIC diagnostics (`step` = cycle), the summary and the learning curve are logged; on Databricks to
# MAGIC the notebook's experiment unless `mlflow_experiment` names one.
# MAGIC
# MAGIC **Parameters** (widgets on Databricks, `COSMOCORE_NOTEBOOK_<NAME>` environment variables
# MAGIC elsewhere; empty means the default): `smoke` (tiny model, smoke suite, 1 cycle), `model`, `arm`,
# MAGIC `suite`, `cycles`, `seed`, `out`, `store`, `resume` (a run directory to continue from its last
# MAGIC checkpoint), `settings` (more trainer settings, `KEY=VALUE,KEY=VALUE`, e.g. `lr=2e-5,warmup_sft=0`),
# MAGIC `device`, `mlflow`, `mlflow_experiment`, `spark_remote`. Defaults are the `quick` benchmark
# MAGIC profile's (the default model, SmolLM2-135M); smoke mode uses the `smoke` profile's.

# COMMAND ----------

# MAGIC %md
# MAGIC ## Where candidate code runs
# MAGIC
# MAGIC Each attempt of the policy is untrusted code. The sandbox runs it in worker processes on this
# MAGIC driver (AST policy, restricted scope, rlimits, deadline, scrubbed environment) against the
# MAGIC **embedded Spark Connect server** it starts here: loopback-only in its own network namespace,
# MAGIC under Landlock, without server-side Python, where the OS allows each layer (a missing one is
# MAGIC printed as a warning). The notebook's `spark` session never runs candidate code.
# MAGIC
# MAGIC With `spark_remote` (`sc://host:port`, such as this cluster's Spark Connect endpoint) they run
# MAGIC there instead, and that server is **not confined**: Spark Connect is not a security boundary,
# MAGIC so code that got past the AST policy could read what the cluster can read (files, tables,
# MAGIC credentials), run Python UDFs on the executors, and reach the network. The policy, the workers'
# MAGIC limits and scoring outside the workers still hold (`docs/SECURITY.md`).

# COMMAND ----------

import time
from dataclasses import asdict
from pathlib import Path

from cosmocore.bench import bench
from cosmocore.cli.notebook import Notebook
from cosmocore.train.trainer import ARMS, TrainConfig

nb = Notebook(globals())
profile = bench.PROFILES["smoke" if nb.smoke else "quick"]
MODEL = nb.param("model", profile.model, help="smollm2-135m, tiny, or a Hugging Face id / path")
ARM = nb.param("arm", "cosmocore", help=", ".join(ARMS))
SUITE = nb.param("suite", profile.suite, help="task suite")
CYCLES = nb.param("cycles", profile.cycles, smoke=1, help="training cycles (after the cycle-0 evaluation)")
SEED = nb.param("seed", 0)
OUT = nb.param("out", nb.default_dir(), help="folder for run directories (checkpoints, summary, curve)")
STORE = nb.param("store", None, kind=str, help="Delta store URI (empty: <out>/store)") or f"{OUT}/store"
RESUME = nb.param("resume", None, kind=str, help="run directory to continue (empty: a new run)")
SETTINGS = nb.param("settings", None, kind=str, help="trainer settings KEY=VALUE,KEY=VALUE")
DEVICE = nb.param("device", None, kind=str, help="cpu, cuda, cuda:N (empty: cuda when present)")
USE_MLFLOW = nb.param("mlflow", True, help="log to MLflow when it is installed")
MLFLOW_EXPERIMENT = nb.param("mlflow_experiment", None, kind=str, help="MLflow experiment (empty: see above)")
SPARK_REMOTE = nb.spark_remote()
nb.settings()

try:
    overrides = bench.parse_set([s for s in (SETTINGS or "").split(",") if s.strip()])
except bench.BenchError as exc:  # its message names the item; the flag it mentions is this parameter
    raise ValueError(f"settings: {exc}") from None
run_dir = Path(RESUME) if RESUME else Path(OUT) / f"train-{ARM}-s{SEED}-{time.strftime('%Y%m%d-%H%M%S')}"
cfg = TrainConfig(**{**profile.train, **overrides}, model=MODEL, arm=ARM, suite=SUITE, cycles=CYCLES, seed=SEED,
                  store=STORE, out=str(run_dir), device=DEVICE, spark_remote=SPARK_REMOTE)
print(f"\nrun directory {run_dir}; store {cfg.store}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Start Spark, load the model, open the store

# COMMAND ----------

from cosmocore.train.trainer import Trainer, cycle_line
from miniworld.suites import catalog

box = nb.sandbox(SPARK_REMOTE, workers=cfg.workers, timeout_s=cfg.timeout_s, kind=catalog.load_suite(SUITE).kind)
trainer = Trainer(cfg, lambda phase, done, total: None, sandbox=box)
if RESUME and trainer.resume():
    print(f"resumed run {trainer.cfg.run_id} at cycle {trainer.cycle}")
print(f"run {trainer.cfg.run_id}: {cfg.model} ({trainer.policy.num_parameters() / 1e6:.1f}M parameters, "
      f"{trainer.device}), arm {cfg.arm}, {len(trainer.run_tasks.practice)} practice / {len(trainer.run_tasks.held_out)} {cfg.eval_split} tasks, "
      f"store {trainer.store.uri}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## MLflow

# COMMAND ----------

import os

from cosmocore.report import mlflow_log

try:
    import mlflow
except ImportError:
    mlflow = None
    print(f"MLflow is not installed ({mlflow_log.INSTALL_HINT}): training without tracking")
mlflow_run = None
if mlflow is not None and USE_MLFLOW:
    if not nb.on_databricks and not os.environ.get("MLFLOW_TRACKING_URI"):
        mlflow.set_tracking_uri(mlflow_log.default_tracking_uri(run_dir))  # a store in the run directory
    if MLFLOW_EXPERIMENT or not nb.on_databricks:  # on Databricks: the notebook's own experiment
        mlflow.set_experiment(MLFLOW_EXPERIMENT or "cosmocore-train")
    mlflow_run = mlflow.start_run(run_name=trainer.cfg.run_id)
    mlflow.log_params({k: str(v)[:500] for k, v in asdict(trainer.cfg).items()})
    mlflow.set_tags({"cosmocore.arm": cfg.arm, "cosmocore.store": str(trainer.store.uri)})
    print(f"mlflow run {mlflow_run.info.run_id} ({mlflow.get_tracking_uri()})")


def log_cycle(record: dict) -> None:
    """Every finite scalar of a cycle's history record, at step = cycle."""
    if mlflow_run is not None:
        metrics = {key: value for key, value, _ in mlflow_log.run_metrics([record], [], [])}
        mlflow.log_metrics(metrics, step=int(record["cycle"]))


for record in trainer.history:  # cycles a resumed run already has
    log_cycle(record)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Train
# MAGIC
# MAGIC One line per cycle: the held-out hallucination rate (share of attempts that are not `correct`),
# MAGIC the day phase's mean reward, the Dream Queue's size and the PPO health signals (approximate KL to
# MAGIC the behaviour policy, clip fraction). Every cycle is checkpointed; a stopped run continues with
# MAGIC `resume` set to the run directory.

# COMMAND ----------

import json


def on_cycle(r: dict) -> None:
    print(f"{cycle_line(r)}, {r['wall_s']:.0f}s", flush=True)
    log_cycle(r)


try:
    summary = trainer.train(on_cycle)
except BaseException:
    if mlflow_run is not None:
        mlflow.end_run(status="FAILED")
    raise
(run_dir / "summary.json").write_text(json.dumps(summary, default=str, indent=2))
print(f"run {summary['run_id']}: {summary['cycles_completed']} cycles, {summary['episodes']} episodes, "
      f"final practice errors {summary['final_practice_errors']}, "
      f"final {cfg.eval_split} hallucination rate {summary['final_hallucination_rate']}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Results: the `evaluations` table and the learning curve

# COMMAND ----------

from cosmocore.cli.notebook import learning_curve

run_id = trainer.cfg.run_id
nb.show(nb.read_delta(f"{str(trainer.store.uri).rstrip('/')}/evaluations", run_id=run_id,
                      columns=["cycle", "turn", "task_id", "bug_class", "outcome", "checks_passed", "checks_total",
                               "reward"], order_by=["cycle", "turn", "task_id"]))
nb.show([{"cycle": r["cycle"], "practice errors": r["practice_errors"],
          "held-out hallucination rate": r.get("eval_hallucination_rate"),
          "day reward": r.get("day_reward"), "dream queue": r.get("dream_queue"), "entropy": r.get("entropy"),
          "approx_kl": r.get("approx_kl"), "clip_frac": r.get("clip_frac"), "seconds": round(r["wall_s"], 1)}
         for r in trainer.history])
evaluations = trainer.store.read_evaluations(filters=[("run_id", "=", run_id)],
                                             columns=["cycle", "turn", "outcome"]).to_pylist()
curve = learning_curve(trainer.history, evaluations, run_dir / "learning_curve.png",
                       title=f"{cfg.arm} on {cfg.suite} ({cfg.model}, seed {cfg.seed})")
nb.show_images([curve])
if mlflow_run is not None:
    mlflow.log_artifact(str(run_dir / "summary.json"))
    mlflow.log_artifact(str(curve))
    mlflow.end_run()

# COMMAND ----------

trainer.close()
box.close()
