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


@pytest.mark.parametrize("name", ["standard", "quick", "verdict"])
def test_splits_hold_out_whole_family_bug_class_pairs_for_dev_and_test(name: str) -> None:
    suite = catalog.load_suite(name)
    tasks = catalog.generate(suite)
    split_of: dict[tuple[str, str], set[str]] = {}
    for t in tasks:
        split_of.setdefault((t.family, t.bug_class), set()).add(t.split)
    assert all(len(s) == 1 for s in split_of.values())  # a pair's mutants never straddle two splits
    test = [p for p, s in split_of.items() if s == {"test"}]
    dev = [p for p, s in split_of.items() if s == {"dev"}]
    share = suite.test_fraction
    assert share - 0.15 <= len(test) / len(split_of) <= share + 0.15
    assert dev and not set(test) & set(dev)
    train_classes = {c for (f, c), s in split_of.items() if s == {"train"}}
    assert {c for _, c in test + dev} <= train_classes  # every held-out bug class is also trained on


def test_quick_and_verdict_test_splits_are_large_enough_to_decide() -> None:
    for name, tasks_at_least in (("quick", 24), ("verdict", 48)):
        test = [t for t in catalog.generate(catalog.load_suite(name)) if t.split == "test"]
        assert len(test) >= tasks_at_least and len({t.bug_class for t in test}) >= 6, name
    standard = [t for t in catalog.generate(catalog.load_suite("standard")) if t.split == "test"]
    assert len(standard) >= 100


def test_split_by_variant_holds_out_each_pairs_last_mutants(tmp_path) -> None:
    path = tmp_path / "v.yaml"
    path.write_text("name: v\nseed: 11\nvariants: 30\neval_by: variant\ntest_variants: 2\ndev_variants: 1\n"
                    "pairs: [[customer_region_revenue, unknown_column], [customer_region_revenue, agg_function],\n"
                    "        [orders_enrichment, join_type]]\ntest_pairs: [[lapsed_customers, unknown_column]]\n")
    tasks = catalog.generate(catalog.load_suite(str(path)))
    by_pair: dict[tuple[str, str], list] = {}
    for t in tasks:
        by_pair.setdefault((t.family, t.bug_class), []).append(t)
    for pair, group in by_pair.items():
        splits = [t.split for t in group]
        if pair == ("lapsed_customers", "unknown_column"):  # held out whole: as many mutants as the others hold out
            assert splits == ["test", "test"]
        elif len(group) >= 4:
            assert splits == ["train"] * (len(group) - 3) + ["dev", "test", "test"], pair
        elif len(group) == 1:
            assert splits == ["train"], pair
        assert len({t.buggy_code for t in group}) == len(group)  # a held-out mutant is new code


def test_every_task_has_several_datasets_including_an_adversarial_one() -> None:
    for t in catalog.generate(catalog.load_suite("standard")):
        assert [d.name for d in t.datasets] == ["typical", "edge", "adversarial"]
        assert t.buggy_code != t.reference_code


@pytest.mark.parametrize("text,needle", [
    ("name: x\nfamilies: [no_such_family]\n", "unknown family 'no_such_family'"),
    ("name: x\nbug_classes: [nope]\n", "unknown bug class 'nope'"),
    ("name: x\ncolour: blue\n", "unknown setting"),
    ("name: x\neval_fraction: 2\n", "test_fraction"),
    ("name: x\ntest_fraction: 0.6\ndev_fraction: 0.5\n", "sum to under 1"),
    ("name: x\ntest_pairs: [[orders_enrichment, join_type]]\ndev_pairs: [[orders_enrichment, join_type]]\n",
     "both test_pairs and dev_pairs"),
    ("name: x\neval_by: family\n", "eval_by"),
    ("name: x\neval_by: variant\nvariants: 1\n", "variants >= test_variants"),
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
    assert {t.split for t in smoke_tasks} == {"train", "dev", "test"}


@pytest.mark.slow
def test_cache_round_trip(smoke_suite, smoke_tasks) -> None:
    cached = catalog.load_cached(smoke_suite)
    assert cached is not None
    assert [t.id for t in cached] == [t.id for t in smoke_tasks]
    assert [t.expected for t in cached] == [t.expected for t in smoke_tasks]
