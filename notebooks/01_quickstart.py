# Databricks notebook source
# MAGIC %md
# MAGIC # CosmoCore Mini-World: quickstart
# MAGIC
# MAGIC Mini-World poses PySpark pipeline tasks with an injected bug (a wrong join, a missing group-by
# MAGIC key, a bad null fill...), runs the code a model writes on a real Spark engine inside a sandbox,
# MAGIC and scores it with data checks. This notebook:
# MAGIC
# MAGIC 1. verifies a task suite on Spark and lists its tasks;
# MAGIC 2. shows one task (spec, input data, the buggy code);
# MAGIC 3. runs candidates through the sandbox: the reference code, the buggy code, and a hostile one;
# MAGIC 4. lets a model solve the task, with a self-correction turn after the sandbox's feedback.
# MAGIC
# MAGIC **Setup.** Install the `cosmocore-miniworld` wheel on the cluster (a cluster library, or
# MAGIC `%pip install /Volumes/<catalog>/<schema>/<volume>/cosmocore_miniworld-0.1.0-py3-none-any.whl`
# MAGIC in a cell above this one). The embedded Spark Connect server needs Java 17+ on the driver.
# MAGIC
# MAGIC **Parameters** (widgets on Databricks, `COSMOCORE_NOTEBOOK_<NAME>` environment variables
# MAGIC elsewhere; an empty widget means the default): `smoke` (yes: tiny random model and the `smoke`
# MAGIC suite, seconds), `suite`, `task_id`, `model`, `turns`, `max_new_tokens`, `spark_remote`.

# COMMAND ----------

# MAGIC %md
# MAGIC ## Where candidate code runs
# MAGIC
# MAGIC Code written by a model is untrusted. It never runs in this notebook's Python process nor on the
# MAGIC notebook's `spark` session: the sandbox runs it in separate worker processes (AST policy,
# MAGIC restricted scope, rlimits, deadline, scrubbed environment) that are Spark Connect clients of
# MAGIC
# MAGIC * **by default, the embedded Spark Connect server** the product starts on this driver node:
# MAGIC   bound to loopback in its own network namespace, under Landlock, without server-side Python.
# MAGIC   Each of these layers is used where the OS allows it; a missing one is printed as a warning
# MAGIC   when the sandbox starts (see `docs/SECURITY.md`).
# MAGIC * **the `spark_remote` server when you give one** (`sc://host:port`), for example this
# MAGIC   cluster's own Spark Connect endpoint. Then the isolation of the embedded server is **lost**:
# MAGIC   Spark Connect is not a security boundary, and that server is not confined. A candidate that
# MAGIC   gets past the AST policy could read any file or table the cluster can read (with the cluster's
# MAGIC   cloud and Unity Catalog credentials), run Python UDFs on the executors, and reach the network;
# MAGIC   the workers keep the host network so that they can reach it. What still holds: the AST policy,
# MAGIC   the worker's restricted scope, rlimits and deadline, the scrubbed environment, and scoring in
# MAGIC   this process. Use it only on a cluster that holds nothing a candidate must not see.

# COMMAND ----------

from cosmocore.cli.notebook import Notebook

nb = Notebook(globals())
SUITE = nb.param("suite", "quick", smoke="smoke", help="task suite")
TASK_ID = nb.param("task_id", None, kind=str, help="task to show and solve (empty: the first train task)")
MODEL = nb.param("model", "smollm2-135m", smoke="tiny", help="smollm2-135m, tiny, or a Hugging Face id / path")
TURNS = nb.param("turns", 2, help="attempts, each after the feedback of the last")
MAX_NEW_TOKENS = nb.param("max_new_tokens", 256, smoke=16, help="generation budget per attempt")
SPARK_REMOTE = nb.spark_remote()
nb.settings()

# COMMAND ----------

# MAGIC %md
# MAGIC ## 1. Start the sandbox and verify the suite
# MAGIC
# MAGIC A suite (YAML in `tasks/`) says which pipeline families and bug classes to combine. Verification
# MAGIC runs each reference twice (its output becomes the expected output and must be deterministic) and
# MAGIC each buggy version once; a bug that no check can observe is discarded. The verified catalog is
# MAGIC cached, so the next run starts here in a second.

# COMMAND ----------

from miniworld.suites import catalog

suite = catalog.load_suite(SUITE)
box = nb.sandbox(SPARK_REMOTE, kind=suite.kind)
tasks = catalog.load_cached(suite)
if tasks is None:
    print(f"verifying suite {suite.name!r} on Spark (once; cached after)...")
    report = catalog.verify(suite, box)
    catalog.save_cache(suite, report, catalog.generate(suite))
    tasks = report.kept
    summary = report.to_json(suite)
    print(f"{summary['tasks']} tasks kept over {summary['families']} families and {summary['bug_classes']} bug "
          f"classes; {summary['discarded_unobservable']} unobservable mutants discarded; failures: {summary['failures']}")
print(f"suite {suite.name}: {len(tasks)} verified tasks "
      f"({sum(t.split == 'train' for t in tasks)} train, {sum(t.split == 'eval' for t in tasks)} held out)")
nb.show([t.summary() for t in tasks])

# COMMAND ----------

# MAGIC %md
# MAGIC ## 2. One task
# MAGIC
# MAGIC What the model sees: the spec, the input schemas and the buggy code. The input tables are shown
# MAGIC as DataFrames (on the notebook's own `spark` when there is one).

# COMMAND ----------

by_id = {t.id: t for t in tasks}
if TASK_ID and TASK_ID not in by_id:
    raise ValueError(f"task_id {TASK_ID!r} is not a verified task of suite {suite.name!r}")
task = by_id[TASK_ID] if TASK_ID else next(t for t in tasks if t.split == "train")
print(f"{task.id}  [{task.family} / {task.bug_class} / {task.split}]\n")
print(task.spec, "\n")
for name, ddl in task.inputs.items():
    print(f"input {name}: {ddl}")
print("\nbuggy code:\n" + task.buggy_code)
dataset = task.datasets[0]
for name in task.inputs:
    print(f"\n{dataset.name} dataset, table {name} ({len(dataset.inputs[name])} rows):")
    nb.show(nb.frame(dataset.inputs[name], task.inputs[name]), limit=10)

# COMMAND ----------

# MAGIC %md
# MAGIC ## 3. Run candidates through the sandbox
# MAGIC
# MAGIC Each candidate gets an outcome (`correct`, `wrong_result`, `runtime_error`, `unknown_reference`,
# MAGIC `syntax_error`, `timeout`, `policy_violation`, `resource_limit`), a progressive reward (checks
# MAGIC passed / checks total) and the feedback a model would see in its next turn. The third candidate
# MAGIC tries to read a file through Spark: the AST policy stops it before it runs.

# COMMAND ----------

HOSTILE = "def transform(**inputs):\n    return spark.read.text('/etc/passwd')\n"
candidates = {"reference": task.reference_code, "buggy": task.buggy_code, "hostile": HOSTILE}
results = {label: box.evaluate(task, code) for label, code in candidates.items()}
nb.show([{"candidate": label, "outcome": r.outcome, "reward": round(r.reward, 3),
          "checks": f"{r.checks_passed}/{r.checks_total}", "seconds": round(r.duration_s, 2)}
         for label, r in results.items()])
for label, r in results.items():
    print(f"--- {label}: {r.outcome}\n{r.feedback}\n")
assert results["reference"].outcome == "correct", results["reference"]
assert results["buggy"].outcome != "correct" and results["hostile"].outcome == "policy_violation"

# COMMAND ----------

# MAGIC %md
# MAGIC ## 4. Let a model solve it
# MAGIC
# MAGIC The policy writes a fix (greedy decoding); the sandbox scores it; if it is not correct, the
# MAGIC feedback goes into the next prompt and the model tries again (the self-correction turn that
# MAGIC training rewards). The default model is SmolLM2-135M-Instruct before any training: expect
# MAGIC mistakes. In smoke mode the model is a tiny random one and only shows the plumbing.

# COMMAND ----------

from cosmocore.model.policy import Policy
from miniworld.kinds.registry import messages

policy = Policy.load(MODEL, seed=0)
print(f"model {MODEL}: {policy.num_parameters() / 1e6:.1f}M parameters on {policy.device}")
history, attempts = [], []
for turn in range(1, TURNS + 1):
    gen = policy.generate([messages(task, history)], max_new_tokens=MAX_NEW_TOKENS, greedy=True)[0]
    result = box.evaluate(task, gen.code)
    attempts.append({"turn": turn, "outcome": result.outcome, "reward": round(result.reward, 3),
                     "checks": f"{result.checks_passed}/{result.checks_total}", "tokens": len(gen.completion_ids)})
    shown = gen.code or f"(no code block; the reply was: {gen.text[:300]!r})"
    print(f"=== turn {turn}: {result.outcome}, reward {result.reward:.3f}\n{shown}\n--- feedback:\n{result.feedback}\n")
    if result.outcome == "correct":
        break
    history.append((gen.code, result.feedback))
nb.show(attempts)

# COMMAND ----------

box.close()
