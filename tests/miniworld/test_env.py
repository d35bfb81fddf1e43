"""The Gymnasium environment and the TRL adapter, on the session's real Spark sandbox."""
from __future__ import annotations

import warnings

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.wrappers import RecordEpisodeStatistics, TimeLimit

import miniworld
from miniworld.env import ENV_ID, MiniWorldEnv
from miniworld.extract import extract_code
from miniworld.trl_reward import MiniWorldReward, task_dataset


@pytest.fixture()
def env(sandbox, smoke_tasks):
    return MiniWorldEnv(smoke_tasks, sandbox, split="train", max_turns=2, seed=3)


@pytest.mark.slow
def test_reset_is_seeded(env) -> None:
    a = [env.reset(seed=11)[0]["task_id"]] + [env.reset()[0]["task_id"] for _ in range(4)]
    b = [env.reset(seed=11)[0]["task_id"]] + [env.reset()[0]["task_id"] for _ in range(4)]
    assert a == b and len(set(a)) > 1
    obs, info = env.reset(seed=11)
    assert obs["turn"] == 0 and "## Spec" in obs["prompt"] and info["messages"][0]["role"] == "system"
    assert info["split"] == "train" and obs in env.observation_space


@pytest.mark.slow
def test_two_turn_self_correction(env, smoke_tasks) -> None:
    task = next(t for t in smoke_tasks if t.split == "train" and t.bug_class == "filter_boundary")
    obs, _ = env.reset(options={"task_id": task.id})
    obs, reward, terminated, truncated, info = env.step(f"Here you go:\n```python\n{task.buggy_code}```")
    assert info["outcome"] != "correct" and 0.0 <= reward < 1.0
    assert not terminated and not truncated and obs["turn"] == 1
    assert "Your attempt 1" in obs["prompt"] and info["feedback"] in obs["prompt"]
    obs, reward, terminated, truncated, info = env.step(task.reference_code)
    assert info["outcome"] == "correct" and reward == 1.0 and terminated and not truncated
    with pytest.raises(RuntimeError, match=r"call reset\(\)"):
        env.step(task.reference_code)


@pytest.mark.slow
def test_truncated_after_max_turns(env, smoke_tasks) -> None:
    task = next(t for t in smoke_tasks if t.split == "train")
    env.reset(options={"task_id": task.id})
    env.step("def transform(**kw):\n    return 1\n")
    _, reward, terminated, truncated, info = env.step("not python at all (")
    assert info["outcome"] == "syntax_error" and reward == 0.0 and truncated and not terminated


@pytest.mark.slow
def test_step_many_runs_a_batch(env, smoke_tasks) -> None:
    train = [t for t in smoke_tasks if t.split == "train"][:4]
    obs, _ = env.reset_many(len(train), options={"task_ids": [t.id for t in train]})
    assert [o["task_id"] for o in obs] == [t.id for t in train]
    out = env.step_many([t.reference_code for t in train])
    assert [o[4]["outcome"] for o in out] == ["correct"] * len(train)
    env.reset_many(2)
    with pytest.raises(ValueError, match="expected 2 actions"):
        env.step_many(["x"])
    with pytest.raises(RuntimeError, match="step_many"):
        env.step("x")


@pytest.mark.slow
def test_step_many_steps_a_subset_and_can_keep_correct_episodes_open(env, smoke_tasks) -> None:
    """What the trainer's rollouts use: only the still-open episodes step; a greedy evaluation
    keeps a correct episode open (stop_on_correct False) to see whether turn 2 breaks it."""
    a, b = [t for t in smoke_tasks if t.split == "train"][:2]
    env.reset_many(2, options={"task_ids": [a.id, b.id], "stop_on_correct": False})
    first = env.step_many([a.reference_code, b.buggy_code])
    assert [o[4]["outcome"] == "correct" for o in first] == [True, False]
    assert not any(o[2] or o[3] for o in first)  # both still open
    (only,) = env.step_many([a.buggy_code], episodes=[0])
    assert only[4]["task_id"] == a.id and only[4]["outcome"] != "correct" and only[3]  # truncated at max_turns
    assert env.last_results[1].outcome == first[1][4]["outcome"]  # episode 1 did not step
    with pytest.raises(RuntimeError, match="over"):
        env.step_many([a.reference_code], episodes=[0])
    env.reset_many(1, options={"task_ids": [a.id]})
    assert env.step_many([a.reference_code])[0][2]  # by default a correct turn terminates


@pytest.mark.slow
def test_unknown_task_and_empty_split(sandbox, smoke_tasks) -> None:
    env = MiniWorldEnv(smoke_tasks, sandbox)
    with pytest.raises(RuntimeError, match=r"call reset\(\)"):
        env.step("x")
    with pytest.raises(KeyError, match="unknown task"):
        env.reset(options={"task_id": "nope"})
    with pytest.raises(ValueError, match="no tasks in split"):
        MiniWorldEnv(smoke_tasks, sandbox, split="holdout")


def _check_env_quietly(env: gymnasium.Env) -> None:
    """Gymnasium's checker, with every warning it raises turned into a failure (no skipped check)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env)


@pytest.mark.slow
def test_gymnasium_make_passes_check_env(sandbox, smoke_tasks) -> None:
    made = gymnasium.make(ENV_ID, suite="smoke", sandbox=sandbox, render_mode="ansi")
    assert isinstance(made.unwrapped, MiniWorldEnv) and made.unwrapped.sandbox is sandbox
    _check_env_quietly(made.unwrapped)
    obs, _ = made.reset(seed=0)
    assert "## Spec" in made.render()
    made.close()
    assert sandbox.pool is not None, "closing an env must not close a sandbox it was given"


@pytest.mark.slow
def test_miniworld_make_passes_check_env_and_wrappers_work(sandbox, smoke_tasks) -> None:
    env = miniworld.make(suite="smoke", sandbox=sandbox, render_mode="ansi")
    _check_env_quietly(env)
    wrapped = RecordEpisodeStatistics(TimeLimit(env, max_episode_steps=1))
    obs, _ = wrapped.reset(seed=5)
    _, reward, terminated, truncated, info = wrapped.step("still not python (")
    assert info["outcome"] == "syntax_error" and truncated and not terminated
    assert info["episode"]["l"] == 1 and info["episode"]["r"] == reward == 0.0
    assert "syntax_error" in env.render()
    env.close()


@pytest.mark.slow
def test_trl_reward_function_and_dataset(sandbox, smoke_tasks) -> None:
    dataset = task_dataset(smoke_tasks, split="train")
    assert set(dataset.column_names) >= {"prompt", "task_id"}
    assert dataset[0]["prompt"][-1]["role"] == "user"
    reward = MiniWorldReward(sandbox, smoke_tasks)
    rows = dataset.select(range(2))
    by_id = {t.id: t for t in smoke_tasks}
    completions = [[{"role": "assistant", "content": f"```python\n{by_id[i].reference_code}```"}] for i in rows["task_id"]]
    completions[1] = [{"role": "assistant", "content": f"```python\n{by_id[rows['task_id'][1]].buggy_code}```"}]
    metrics: dict[str, float] = {}
    extra: dict[str, list] = {}
    scores = reward(prompts=rows["prompt"], completions=completions, task_id=rows["task_id"],
                    log_metric=metrics.__setitem__, log_extra=extra.__setitem__)  # as TRL 1.16 passes them
    assert scores[0] == 1.0 and 0.0 <= scores[1] < 1.0
    assert reward.last_outcomes[0] == "correct" and extra["outcome"] == reward.last_outcomes
    assert metrics["miniworld/outcome/correct"] == 0.5 and sum(metrics.values()) == 1.0


def test_extract_code_prefers_the_block_defining_transform() -> None:
    reply = "Explanation\n```python\nx = 1\n```\nFixed:\n```python\ndef transform(a):\n    return a\n```\n"
    assert extract_code(reply) == "def transform(a):\n    return a\n"
    assert extract_code("def transform(a):\n    return a") == "def transform(a):\n    return a\n"
    assert extract_code("```\nfoo()\n```") == "foo()\n"
