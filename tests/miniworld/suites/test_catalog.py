"""Suites: loading, bad input, seeded byte-for-byte generation, split by held-out pairs, and
verification on Spark (observable mutants only; the reference scores correct)."""
from __future__ import annotations

import json

import pytest

import pipelines
from miniworld.suites import bugs, catalog


def _dump(tasks) -> str:
    return json.dumps([t.to_json() | {"inputs_rows": [[d.name, repr(d.inputs)] for d in t.datasets]} for t in tasks],
                      sort_keys=True)


def test_same_seed_same_tasks_byte_for_byte() -> None:
    suite = catalog.load_suite("standard")
    assert _dump(catalog.generate(suite)) == _dump(catalog.generate(catalog.load_suite("standard")))


def test_another_seed_gives_other_data() -> None:
    suite = catalog.load_suite("smoke")
    other = catalog.Suite(**{**suite.__dict__, "seed": suite.seed + 1})
    a, b = catalog.generate(suite), catalog.generate(other)
    assert [t.id for t in a] == [t.id for t in b]
    assert a[0].datasets[0].inputs != b[0].datasets[0].inputs


def test_standard_suite_covers_families_and_bug_classes() -> None:
    tasks = catalog.generate(catalog.load_suite("standard"))
    assert len({t.family for t in tasks}) >= 12
    assert len({t.bug_class for t in tasks}) >= 10
    assert len(pipelines.family_names()) >= 12 and len(bugs.BUG_CLASSES) >= 10


def test_split_holds_out_whole_family_bug_class_pairs() -> None:
    tasks = catalog.generate(catalog.load_suite("standard"))
    split_of: dict[tuple[str, str], set[str]] = {}
    for t in tasks:
        split_of.setdefault((t.family, t.bug_class), set()).add(t.split)
    assert all(len(s) == 1 for s in split_of.values())
    eval_pairs = [p for p, s in split_of.items() if s == {"eval"}]
    assert 0.1 <= len(eval_pairs) / len(split_of) <= 0.4
    train_classes = {c for (f, c), s in split_of.items() if s == {"train"}}
    assert {c for _, c in eval_pairs} <= train_classes  # every held-out bug class is also trained on


def test_split_by_variant_holds_out_each_pairs_last_mutant() -> None:
    tasks = catalog.generate(catalog.load_suite("quick"))
    by_pair: dict[tuple[str, str], list] = {}
    for t in tasks:
        by_pair.setdefault((t.family, t.bug_class), []).append(t)
    evals = [t for t in tasks if t.split == "eval"]
    assert len(evals) >= 5
    for pair, group in by_pair.items():
        splits = [t.split for t in group]
        assert splits == ["train"] * (len(group) - 1) + ["eval"] if len(group) > 1 else splits == ["train"], pair
        assert len({t.buggy_code for t in group}) == len(group)  # a held-out mutant is new code


def test_every_task_has_several_datasets_including_an_adversarial_one() -> None:
    for t in catalog.generate(catalog.load_suite("standard")):
        assert [d.name for d in t.datasets] == ["typical", "edge", "adversarial"]
        assert t.buggy_code != t.reference_code


@pytest.mark.parametrize("text,needle", [
    ("name: x\nfamilies: [no_such_family]\n", "unknown family 'no_such_family'"),
    ("name: x\nbug_classes: [nope]\n", "unknown bug class 'nope'"),
    ("name: x\ncolour: blue\n", "unknown setting"),
    ("name: x\neval_fraction: 2\n", "eval_fraction"),
    ("name: x\neval_by: family\n", "eval_by"),
    ("name: x\neval_by: variant\nvariants: 1\n", "variants >= 2"),
    ("[1, 2\n", "not valid YAML"),
    ("- just\n- a list\n", "must be a mapping"),
])
def test_bad_suite_files_fail_with_one_line_naming_the_file(tmp_path, text: str, needle: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(catalog.SuiteError) as info:
        catalog.load_suite(str(path))
    message = str(info.value)
    assert needle in message and str(path) in message and "\n" not in message


def test_unknown_suite_name() -> None:
    with pytest.raises(catalog.SuiteError, match="unknown suite 'nope'"):
        catalog.load_suite("nope")


@pytest.mark.slow
def test_verified_smoke_tasks_reference_correct_buggy_not(sandbox, smoke_tasks) -> None:
    generated = catalog.generate(catalog.load_suite("smoke"))
    assert 0 < len(smoke_tasks) <= len(generated)
    results = sandbox.evaluate_many([(t, t.reference_code) for t in smoke_tasks] +
                                    [(t, t.buggy_code) for t in smoke_tasks])
    n = len(smoke_tasks)
    assert [r.outcome for r in results[:n]] == ["correct"] * n
    assert all(r.reward == 1.0 for r in results[:n])
    assert all(r.outcome != "correct" and r.reward < 1.0 for r in results[n:])
    assert {t.split for t in smoke_tasks} == {"train", "eval"}


@pytest.mark.slow
def test_cache_round_trip(smoke_suite, smoke_tasks) -> None:
    cached = catalog.load_cached(smoke_suite)
    assert cached is not None
    assert [t.id for t in cached] == [t.id for t in smoke_tasks]
    assert [t.expected for t in cached] == [t.expected for t in smoke_tasks]
