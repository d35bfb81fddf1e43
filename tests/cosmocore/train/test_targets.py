"""The replies' token budget: room for every scored task's reference reply, or a warning."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cosmocore.bench import bench
from cosmocore.model.policy import Policy
from cosmocore.train.targets import BUDGET_MARGIN, Targets
from cosmocore.train.tasks import RunTasks
from miniworld.suites import catalog


@pytest.fixture(scope="module")
def targets(tmp_path_factory) -> Targets:
    """The default model's tokenizer (``tiny`` shares it): reference lengths need nothing else."""
    return Targets(Policy.load("tiny", device="cpu", cache_dir=str(tmp_path_factory.mktemp("models"))))


@pytest.fixture(scope="module")
def quick_tasks():
    return catalog.generate(catalog.load_suite("quick"))


def test_the_automatic_budget_fits_the_longest_reference_with_its_margin(targets, quick_tasks) -> None:
    budget = targets.reply_budget(quick_tasks, 0)
    longest = max(targets.reply_length(t) for t in quick_tasks)
    assert budget % 8 == 0
    assert longest * (1 + BUDGET_MARGIN) <= budget < longest * (1 + BUDGET_MARGIN) + 8


def test_a_fixed_budget_is_kept_and_warned_about_when_it_cuts_references(targets, quick_tasks, caplog) -> None:
    lengths = sorted(targets.reply_length(t) for t in quick_tasks)
    with caplog.at_level(logging.WARNING, logger="cosmocore.train.targets"):
        assert targets.reply_budget(quick_tasks, lengths[-1]) == lengths[-1]
        assert not caplog.records
        short = lengths[-1] - 1
        assert targets.reply_budget(quick_tasks, short) == short
    cut = sum(n > short for n in lengths)
    assert f"max_new_tokens {short} is shorter than the reference reply of {cut} of {len(quick_tasks)}" in caplog.text


@pytest.mark.parametrize("profile", ["quick", "verdict", "paper"])
def test_every_task_a_profile_scores_can_be_answered_within_its_budget(profile, targets, tmp_path: Path) -> None:
    """The fixed 176 tokens the quick and verdict profiles had cut 11 of the quick suite's 30 test
    tasks (and 33 of verdict's 60) short of their reference: never correct, whatever the policy."""
    cfg = bench.resolve(profile)
    tasks = catalog.generate(catalog.load_suite(cfg.suite))
    for run in cfg.runs():
        tc = bench.train_config(cfg, run, tmp_path, None)
        chosen = RunTasks.choose(tasks, tc.seed, tc.practice_tasks, tc.eval_split, tc.eval_tasks)
        scored = chosen.practice + chosen.held_out
        budget = targets.reply_budget(scored, tc.max_new_tokens)
        too_long = [t.id for t in scored if targets.reply_length(t) > budget]
        assert not too_long, f"{profile} {run['run_id']}: budget {budget} cuts {too_long}"
