"""The README's results table, regenerated from committed report.json files:

    python -m cosmocore.report.results_table docs/results/*/report.json [--write README.md]

One row per run and claim arm (cosmocore and cocos against uniform): the design, the headline
claims (test hallucination rate, practice cycles to zero error) as estimate, 95% interval and
verdict, and how many runs of each arm reached zero practice errors. ``--write`` replaces the
block between the README's ``<!-- results:start -->`` and ``<!-- results:end -->`` markers, so
the figures quoted are always the committed ones."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

START, END = "<!-- results:start -->", "<!-- results:end -->"
HEADLINES = (("hallucination_rate", "test", "test hallucination rate"),
             ("cycles_to_zero_error", "practice", "practice cycles to zero error"))


def _claim(report: dict, metric: str, split: str, arm: str) -> dict | None:
    return next((c for c in report.get("claims", []) if c.get("metric") == metric and c.get("split") == split
                 and c.get("arm") == arm), None)


def _cell(c: dict | None) -> str:
    if c is None or c.get("estimate") is None:
        return f"{c['verdict'] if c else 'n/a'}"
    lo, hi = c["ci95"]
    return f"{c['estimate']:+.2f} [{lo:+.2f}, {hi:+.2f}] {c['verdict']}"


def _reached(report: dict, arm: str) -> str:
    z = report.get("arms", {}).get(arm, {}).get("practice_cycles_to_zero_error") or {}
    per_seed = z.get("per_seed") or []
    return f"{sum(v is not None for v in per_seed)}/{len(per_seed)}"


def rows(path: Path) -> list[str]:
    report = json.loads(path.read_text())
    d = report["design"]
    run = f"[{path.parent.name}]({path.parent.as_posix()}/report.md)"
    design = f"{d['seeds']} seeds x {d['cycles']} cycles, {d['test_tasks']} test tasks"
    out = []
    for arm in [a for a in ("cosmocore", "cocos") if a in d["arms"]]:
        cells = [_cell(_claim(report, metric, split, arm)) for metric, split, _ in HEADLINES]
        out.append(f"| {run} | {design} | {arm} - uniform | {cells[0]} | {cells[1]} | "
                   f"{_reached(report, arm)} vs {_reached(report, 'uniform')} |")
    return out


def table(paths: list[Path]) -> str:
    head = ("| run | design | arms | " + " | ".join(h for _, _, h in HEADLINES)
            + " (estimate [95% CI] verdict) | runs reaching zero practice errors |")
    lines = [head, "|" + "---|" * 6] + [r for p in sorted(paths) for r in rows(p)]
    return "\n".join(lines)


def write(readme: Path, text: str) -> None:
    """Replace the marked block; a README without the markers is refused, not appended to."""
    body = readme.read_text()
    if START not in body or END not in body:
        raise SystemExit(f"error: {readme} has no {START} ... {END} block")
    head, rest = body.split(START, 1)
    readme.write_text(f"{head}{START}\n{text}\n{END}{rest.split(END, 1)[1]}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path)
    parser.add_argument("--write", type=Path, default=None, help="README to update between the markers")
    args = parser.parse_args(argv)
    text = table(args.reports)
    if args.write:
        write(args.write, text)
    print(text)


if __name__ == "__main__":
    main()
