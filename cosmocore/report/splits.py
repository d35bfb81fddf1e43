"""Which evaluation rows a report figure reads: the practice set, the held-out split, the greedy
reply; the practice-set cycles-to-zero-error of one run; and the run's design as the rows show it.

Splits in the ``evaluations`` table: ``practice`` (the train tasks a run replays, scored greedily
every cycle), ``dev`` (where profile settings are chosen), ``test`` (the headline: nothing is
tuned on it). Stores written before the three splits have ``eval`` (one held-out split) or no
split at all: both are read as the held-out split, so an old run still reports.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

PRACTICE, DEV, TEST, LEGACY = "practice", "dev", "test", "eval"
HELD_OUT_ORDER = (TEST, LEGACY, DEV)  # the first one a run has is its held-out split
PRACTISED, UNPRACTISED = "practised", "unpractised"
CORRECT = "correct"


def split_of(row: Mapping[str, Any]) -> str:
    """A row's split; a null split (stores older than the column's use) is the legacy ``eval``."""
    return row.get("split") or LEGACY


def held_out_split(rows: Iterable[Mapping[str, Any]]) -> str | None:
    """The held-out split the headline figures come from: ``test``, else (an older store)
    ``eval``, else ``dev`` (a tuning run); None when the rows have only practice rows."""
    present = {split_of(r) for r in rows}
    return next((s for s in HELD_OUT_ORDER if s in present), None)


def rows_of(rows: Iterable[Mapping[str, Any]], split: str | None) -> list[dict]:
    return [dict(r) for r in rows if split is not None and split_of(r) == split]


def first_sample(rows: Iterable[Mapping[str, Any]]) -> list[dict]:
    """Only sample 0 of each (task, cycle, turn): the greedy reply, or the first of k sampled
    ones. Metrics that follow one reply per task through cycles (recurrence, self-correction,
    cycles to zero error) read these; rates read every sample (errors / executions)."""
    return [dict(r) for r in rows if not r.get("sample")]


def _turn1_by_cycle(rows: Iterable[Mapping[str, Any]]) -> dict[int, dict[Any, bool]]:
    out: dict[int, dict[Any, bool]] = defaultdict(dict)
    for r in first_sample(rows):
        if r.get("turn") == 1 and r.get("cycle") is not None:
            out[int(r["cycle"])][r.get("task_id")] = r.get("outcome") == CORRECT
    return out


def practice_cycles_to_zero_error(practice_rows: Sequence[Mapping[str, Any]], budget: int) -> dict[str, Any]:
    """The first cycle c (cycles trained; 0 = before training) at which the run's reply (turn 1,
    sample 0) is correct on *every* task of its practice set (all practice task ids the run
    has rows for; a cycle missing any of them does not count). It need not hold on the next
    cycle: the paper counts "replayed until bug-free", the first time there, and a later slip is
    counted separately as ``relapsed`` (some scored cycle after c has an error), so a reader sees
    both. ``cycle`` is None (censored at ``budget``, or at the last scored cycle when the run
    stopped earlier: ``censored_at``) when no cycle reaches zero."""
    by = _turn1_by_cycle(practice_rows)
    tasks = {t for d in by.values() for t in d}
    last = max(by, default=None)
    out: dict[str, Any] = {"cycle": None, "relapsed": None, "tasks": len(tasks), "cycles_scored": len(by),
                           "censored_at": int(budget if last is None or last >= budget else last)}
    if not tasks:
        return out
    for c in sorted(by):
        if set(by[c]) == tasks and all(by[c].values()):
            out["cycle"] = c
            out["relapsed"] = any(not all(by[k].values()) for k in by if k > c)
            out["censored_at"] = None
            return out
    return out


def practised_classes(rows: Iterable[Mapping[str, Any]]) -> set[str]:
    """The bug classes of a run's practice set."""
    return {r.get("bug_class") for r in rows if split_of(r) == PRACTICE and r.get("bug_class")}


def group_of(row: Mapping[str, Any], practised: set[str]) -> str | None:
    """A held-out row's group: its ``group`` column, else (an older store) whether its bug class
    is among the run's practised ones (None when the run has no practice rows to tell)."""
    if row.get("group"):
        return str(row["group"])
    if not practised:
        return None
    return PRACTISED if row.get("bug_class") in practised else UNPRACTISED


def task_errors(rows: Iterable[Mapping[str, Any]], cycle: int, group: str | None = None,
                practised: set[str] | None = None) -> dict[Any, tuple[int, int]]:
    """{task_id: (errors, executions)} over the turn-1 replies (every sample) at ``cycle``,
    optionally only the tasks of one group."""
    out: dict[Any, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        if r.get("turn") != 1 or r.get("cycle") != cycle:
            continue
        if group is not None and group_of(r, practised or set()) != group:
            continue
        cell = out[r.get("task_id")]
        cell[0] += r.get("outcome") != CORRECT
        cell[1] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}


def task_recurrence(rows: Iterable[Mapping[str, Any]]) -> dict[Any, tuple[int, int]]:
    """{task_id: (recurrences, later attempts)}: per task, after the first cycle its reply
    (turn 1, sample 0) was correct, how many later scored cycles were not correct. The pooled
    ratio over tasks is ``metrics.bug_recurrence_rate``'s ``rate``."""
    seqs: dict[Any, list[tuple[int, bool]]] = defaultdict(list)
    for c, d in _turn1_by_cycle(rows).items():
        for task, ok in d.items():
            seqs[task].append((c, ok))
    out = {}
    for task, seq in seqs.items():
        oks = [ok for _, ok in sorted(seq, key=lambda x: x[0])]
        if True in oks:
            later = oks[oks.index(True) + 1:]
            out[task] = (sum(not ok for ok in later), len(later))
    return out


def last_cycle(rows: Iterable[Mapping[str, Any]]) -> int | None:
    return max((int(r["cycle"]) for r in rows if r.get("cycle") is not None and r.get("turn") == 1), default=None)


# ------------------------------------------------------------------ the design as run
def _per_run_tasks(evals: Mapping[str, Sequence[Mapping[str, Any]]], split: str | Sequence[str]) -> list[int]:
    wanted = {split} if isinstance(split, str) else set(split)
    return [len({r.get("task_id") for r in rows if split_of(r) in wanted}) for rows in evals.values()]


def design(bench: Mapping[str, Any], evals: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """The design this report's figures rest on (``evals``: run id -> its evaluation rows).
    ``profile`` and ``arms`` come from bench.json; every count comes from the evaluation rows, so
    it says what was measured, not what was planned: ``seeds`` the distinct seeds with rows,
    ``cycles`` the largest cycle scored, ``practice_tasks``/``dev_tasks``/``test_tasks`` the
    distinct tasks per run of each split (the fewest any run has; ``test`` counts an older
    store's ``eval`` split), ``samples_per_task`` the turn-1 replies scored per held-out task and
    cycle (the fewest), ``held_out_cycles`` the cycles at which the held-out split was scored."""
    rows = [r for rs in evals.values() for r in rs]
    held = held_out_split(rows)
    per_cell: dict[tuple, int] = defaultdict(int)
    for r in rows:
        if r.get("turn") == 1 and split_of(r) == held:
            per_cell[(r.get("run_id"), r.get("cycle"), r.get("task_id"))] += 1
    fewest = lambda xs: min((x for x in xs), default=0)  # noqa: E731
    return {
        "profile": bench.get("profile"),
        "arms": list(bench.get("arms") or sorted({r.get("arm") for r in rows if r.get("arm")})),
        "seeds": len({r.get("seed") for r in rows if r.get("seed") is not None}),
        "cycles": max((int(r["cycle"]) for r in rows if r.get("cycle") is not None), default=0),
        "practice_tasks": fewest(_per_run_tasks(evals, PRACTICE)),
        "dev_tasks": fewest(_per_run_tasks(evals, DEV)),
        "test_tasks": fewest(_per_run_tasks(evals, (TEST, LEGACY))),
        "samples_per_task": fewest(per_cell.values()),
        # added beyond the contract
        "held_out_split": held,
        "held_out_cycles": sorted({int(r["cycle"]) for r in rows if split_of(r) == held and r.get("cycle") is not None}),
        "cycle_budget": int(bench.get("cycles") or 0),
    }
