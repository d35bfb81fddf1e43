"""Which tasks a run sees (cosmocore.train.tasks): pure, from a generated suite, no Spark."""
from __future__ import annotations

from collections import Counter

import pytest

from cosmocore.bench.bench import PROFILES
from cosmocore.train.tasks import RunTasks
from miniworld.suites import catalog


@pytest.fixture(scope="module")
def quick() -> list:
    return catalog.generate(catalog.load_suite("quick"))


def test_practice_set_spans_the_pairs_and_the_warm_start_never_sees_it(quick) -> None:
    run = RunTasks.choose(quick, seed=0, practice=12, eval_split="test")
    assert len(run.practice) == 12 and all(t.split == "train" for t in run.practice + run.warm_pool)
    pairs = Counter((t.family, t.bug_class) for t in run.practice)
    assert max(pairs.values()) == 1  # one task per pair before a second of any
    assert not {t.id for t in run.practice} & {t.id for t in run.warm_pool}
    assert {t.split for t in run.held_out} == {"test"}
    again = RunTasks.choose(quick, seed=0, practice=12, eval_split="test")
    other = RunTasks.choose(quick, seed=1, practice=12, eval_split="test")
    assert [t.id for t in again.practice] == [t.id for t in run.practice] != [t.id for t in other.practice]
    groups = Counter(run.group(t) for t in run.held_out)
    assert set(groups) <= {"practised", "unpractised"} and sum(groups.values()) == len(run.held_out)


def test_day_draws_cover_the_practice_set_evenly_and_repeat_per_cycle(quick) -> None:
    run = RunTasks.choose(quick, seed=3, practice=12, eval_split="test")
    day = run.day_draws(seed=3, cycle=1, n=12)
    assert sorted(t.id for t in day) == sorted(t.id for t in run.practice)
    assert [t.id for t in run.day_draws(3, 1, 12)] == [t.id for t in day] != [t.id for t in run.day_draws(3, 2, 12)]
    assert Counter(t.id for t in run.day_draws(3, 1, 24)).most_common(1)[0][1] == 2


def test_dev_runs_never_see_the_test_split(quick) -> None:
    run = RunTasks.choose(quick, seed=0, practice=12, eval_split="dev")
    seen = run.practice + run.warm_pool + run.held_out
    assert "test" not in {t.split for t in seen} and {t.split for t in run.held_out} == {"dev"}


def test_no_profile_setting_names_or_reads_the_test_split() -> None:
    """Settings are chosen on dev: no profile's trainer overrides mention test tasks or pick
    what to score by them (the held-out split is a flag, test by default)."""
    for name, profile in PROFILES.items():
        assert "eval_split" not in profile.train, name
        assert not any("test" in str(v) for v in profile.train.values()), name


def test_eval_tasks_subset_is_the_same_for_every_seed(quick) -> None:
    a = RunTasks.choose(quick, seed=0, practice=12, eval_split="test", eval_tasks=10)
    b = RunTasks.choose(quick, seed=4, practice=12, eval_split="test", eval_tasks=10)
    assert len(a.held_out) == 10 and [t.id for t in a.held_out] == [t.id for t in b.held_out]


def test_a_suite_without_the_held_out_split_is_refused(quick) -> None:
    train_only = [t for t in quick if t.split == "train"]
    with pytest.raises(ValueError, match="needs both train and dev tasks"):
        RunTasks.choose(train_only, seed=0, practice=12, eval_split="dev")
