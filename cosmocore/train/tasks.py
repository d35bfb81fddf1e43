"""Which tasks a run sees, and when: its practice set, the warm start's pool, the held-out split
and the day's draws. The arms of a seed get the same of each (all seeded by the seed alone), so
they differ only in what they replay."""
from __future__ import annotations

import random
from dataclasses import dataclass

from miniworld.task import Task


@dataclass(frozen=True)
class RunTasks:
    practice: list[Task]  # practised: the day draws from them, scored greedily every cycle
    warm_pool: list[Task]  # the warm start's (buggy -> reference) pairs: train minus practice
    held_out: list[Task]  # the dev or test split: generalisation, never trained on
    practised_classes: frozenset[str]

    @classmethod
    def choose(cls, tasks: list[Task], seed: int, practice: int, eval_split: str, eval_tasks: int = 0) -> RunTasks:
        """The practice set takes one task of each (family, bug class) pair in a seeded order
        before a second of any, so a small set still spans the bug classes; the warm start
        learns from the rest of train (all of it when nothing is left)."""
        train = [t for t in tasks if t.split == "train"]
        held = [t for t in tasks if t.split == eval_split]
        if not train or not held:
            raise ValueError(f"the suite needs both train and {eval_split} tasks "
                             f"(has {len(train)} train, {len(held)} {eval_split})")
        rng = random.Random(f"{seed}/practice")
        by_pair: dict[tuple[str, str], list[Task]] = {}
        for t in train:
            by_pair.setdefault((t.family, t.bug_class), []).append(t)
        for members in by_pair.values():
            rng.shuffle(members)
        pairs = sorted(by_pair)
        rng.shuffle(pairs)
        order = [by_pair[p][k] for k in range(max(map(len, by_pair.values()))) for p in pairs if k < len(by_pair[p])]
        chosen = order[:practice]
        ids = {t.id for t in chosen}
        pool = [t for t in train if t.id not in ids] or train
        if eval_tasks:  # the same subset for every seed: tasks stay crossed with seeds
            held = random.Random("held-out").sample(held, min(eval_tasks, len(held)))
        return cls(chosen, pool, held, frozenset(t.bug_class for t in chosen))

    def group(self, task: Task) -> str:
        """A held-out task's bug class was practised by this run, or never."""
        return "practised" if task.bug_class in self.practised_classes else "unpractised"

    def day_draws(self, seed: int, cycle: int, n: int) -> list[Task]:
        """The day's ``n`` practice tasks: the set in a fresh seeded order, again as needed, so
        every practice task comes up equally often. Seeded by (seed, cycle): a resumed cycle
        draws the same."""
        rng = random.Random(f"{seed}/day/{cycle}")
        out: list[Task] = []
        while len(out) < n:
            order = list(self.practice)
            rng.shuffle(order)
            out += order
        return out[:n]
