"""A task suite as parsed from its YAML file, and what verifying it found.

Data only: the suite's task kind (:mod:`miniworld.kinds`) generates and verifies its tasks;
:mod:`miniworld.suites.catalog` finds suite files and caches verified tasks.
"""
from __future__ import annotations

from dataclasses import dataclass

from miniworld.task_kind import TaskKind
from miniworld.suites.imported import ImportedFamily
from miniworld.task import Task


#: Task splits: train (practised), dev (where profile settings are chosen), test (headline figures).
SPLITS = ("train", "dev", "test")


class SuiteError(ValueError):
    """A suite name or file that cannot be used (one line, naming it)."""


@dataclass(frozen=True)
class Suite:
    kind: TaskKind  # what its tasks are: how they are generated, prompted, run and checked
    name: str
    seed: int
    families: tuple[str, ...]
    bug_classes: tuple[str, ...]
    variants: int
    kinds: tuple[str, ...]  # dataset kinds (typical, edge, adversarial), see pipelines.KINDS
    test_fraction: float  # eval_by pair: share of each bug class's pairs held out whole for test
    pairs: tuple[tuple[str, str], ...] | None = None  # explicit (family, bug class) list
    test_pairs: tuple[tuple[str, str], ...] | None = None  # pairs held out whole for test
    source: str = ""
    eval_by: str = "pair"  # "pair": whole (family, bug class) pairs held out; "variant": each pair's last variants
    imported: tuple[ImportedFamily, ...] = ()  # families defined in the suite file itself
    dev_fraction: float = 0.0  # like test_fraction, for the dev split (where profile settings are chosen)
    dev_pairs: tuple[tuple[str, str], ...] | None = None
    test_variants: int = 1  # eval_by variant: each pair's last mutants held out for test ...
    dev_variants: int = 0  # ... and the ones before them for dev (a held-out whole pair keeps as many)


@dataclass
class VerifyReport:
    """Which generated tasks verification kept, and why the others went."""

    generated: int
    kept: list[Task]
    unobservable: list[str]
    failures: list[dict]

    def to_json(self, suite: Suite) -> dict:
        kept = self.kept
        return {"suite": suite.name, "tasks": len(kept), "families": len({t.family for t in kept}),
                "bug_classes": len({t.bug_class for t in kept}), "verified": len(kept),
                "generated": self.generated, "discarded_unobservable": len(self.unobservable),
                **{split: sum(t.split == split for t in kept) for split in SPLITS},
                "failures": self.failures}
