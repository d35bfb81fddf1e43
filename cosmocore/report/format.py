"""The benchmark report as Markdown and as one self-contained HTML page.

Both are rendered from one list of blocks (headings, paragraphs, tables, images, lists) built
from the report dict, so the two can never say different things. The HTML inlines its CSS and
its PNGs (base64 data URIs): it opens anywhere, offline, and can be mailed as one file.
"""
from __future__ import annotations

import base64
import html as _html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

NA = "n/a"


# ------------------------------------------------------------------ number formatting
def fmt(x: Any, digits: int = 2) -> str:
    return NA if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def pct(x: Any) -> str:
    return NA if x is None else f"{x:.1%}"


def signed_pct(x: Any) -> str:
    return NA if x is None else f"{x:+.1%}"


def fmt_ci(ci: Sequence[Any] | None, f: Callable[[Any], str] = fmt) -> str:
    """``[lo, hi]``; "(no CI)" when undefined (one seed, or no values)."""
    if not ci or ci[0] is None:
        return "(no CI)"
    return f"[{f(ci[0])}, {f(ci[1])}]"


def stat(s: Mapping[str, Any] | None, f: Callable[[Any], str] = fmt) -> str:
    """``mean [lo, hi]`` of a {mean, ci95} block."""
    if not s or s.get("mean") is None:
        return NA
    return f"{f(s['mean'])} {fmt_ci(s.get('ci95'), f)}"


# ------------------------------------------------------------------ blocks
@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Para:
    text: str


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass
class Image:
    path: str  # relative to the run directory
    alt: str


@dataclass
class Bullets:
    items: list[str]


Block = Union[Heading, Para, Table, Image, Bullets]


def blocks(r: Mapping[str, Any]) -> list[Block]:
    """The report's content, in reading order."""
    arms: Mapping[str, Any] = r["arms"]
    out: list[Block] = [Heading("CosmoCore Mini-World: bug-recurrence benchmark", 1), Para(
        f"Profile **{r['profile']}**, model `{r['model']}`, suite `{r['suite']}`, seeds {r['seeds']}, "
        f"{r['cycles']} training cycles (cycle 0 = the policy before training), zero-error target: eval "
        f"hallucination rate <= {r['target']:g}. Runs finished: {r['runs_finished']} of {r['runs_total']}. "
        f"Bench `{r.get('bench_id') or ''}`, generated {r['generated_at']}.")]
    out += verdict_blocks(r)
    if r["missing_runs"]:
        out.append(Para("**Unfinished runs, not in this report:** " + ", ".join(
            f"{m['arm']} seed {m['seed']} (`{m['dir']}`)" for m in r["missing_runs"])))
    if r["runs_without_evaluations"]:
        out.append(Para("**Finished runs with no rows in the evaluations table:** "
                        + ", ".join(f"`{x}`" for x in r["runs_without_evaluations"])))
    if any(len(a["seeds"]) < 2 for a in arms.values()):
        out.append(Para("Arms with a single seed have no confidence interval (shown as \"(no CI)\"); their "
                        "comparisons are not measurable."))

    out += [Heading("Paper claims as relative changes"), Para(
        "The published figures read as relative changes of per-seed means, with a seed-only bootstrap "
        "(tasks held fixed, so narrower than the verdicts' intervals): context, not the verdict."), Table(
        ["source", "claim", "arms", "claimed", "measured", "95% CI", "verdict", "why"],
        [[c["source"], c["claim"], f"{c['arm']} vs {c['baseline']}",
          signed_pct(c["claimed_relative_change"]) if c["claimed_relative_change"] is not None else c["direction"],
          signed_pct(c["measured_relative_change"]), fmt_ci(c["ci95"], signed_pct), f"**{c['verdict']}**", c["reason"]]
         for c in r["paper_claims"]]),
        Para("A claim is *reproduced* only when the whole 95% interval of the relative change lies on the "
             "claimed side of zero and reaches the claimed size; the point estimate alone never decides.")]

    out += [Heading("Results per arm"), Para("Mean over seeds with the 95% Student-t interval in brackets."), Table(
        ["arm", "seeds", "final halluc. rate", "pass@1", "change from cycle 0", "held-out cycles to zero error",
         "censored", "bug recurrence", "Δi→c", "Δc→i"],
        [[n, str(len(a["seeds"])), stat(a["final_hallucination_rate"], pct), stat(a.get("pass_at_1"), pct),
          stat(a["hallucination_rate_change"], signed_pct),
          stat(a["cycles_to_zero_error"], lambda x: fmt(x, 1)),
          f"{a['cycles_to_zero_error']['censored']}/{len(a['seeds'])}", stat(a["bug_recurrence_rate"], pct),
          stat(a["self_correction"]["delta_i_to_c"], pct), stat(a["self_correction"]["delta_c_to_i"], pct)]
         for n, a in arms.items()]),
        Table(["arm", "sampling entropy (nats)", "confidence variance", "buffer max", "Dream Queue share",
               "tagger valence AUC", "episodes/s", "wall time per run (s)"],
              [[n, stat(a["entropy_mean"], lambda x: fmt(x, 3)), stat(a["confidence_variance"], lambda x: fmt(x, 4)),
                stat(a["buffer_occupancy_max"], lambda x: fmt(x, 0)), stat(a["dream_queue_share"], pct),
                stat(a["tagger_valence_auc"]), stat(a["throughput"]["episodes_per_s"], lambda x: fmt(x, 3)),
                stat(a["wall_time_s"], lambda x: fmt(x, 0))] for n, a in arms.items()]),
        Para("Cycles to zero error: the mean is over the seeds that reached the target (censored seeds are "
             "counted beside it); the restricted mean counting a censored seed as the budget is in report.json.")]

    plots = r.get("plots", {})
    for key, alt in (("hallucination_rate", "hallucination rate per cycle"), ("cycles_to_zero_error", "cycles to zero error"),
                     ("recurrence_self_correction", "bug recurrence and self-correction"),
                     ("buffer_occupancy", "buffer occupancy"), ("valence_arousal", "valence/arousal scatter")):
        if key in plots:
            out.append(Image(plots[key], alt))

    n_cycles = max((len(a["hallucination_rate_per_cycle"]["mean"]) for a in arms.values()), default=0)
    out += [Heading("Hallucination rate per cycle"), Table(
        ["cycle"] + list(arms),
        [[str(c)] + [_curve_cell(a["hallucination_rate_per_cycle"], c) for a in arms.values()] for c in range(n_cycles)])]
    out += [Heading("Last cycle by outcome and by bug class", 3), Table(
        ["arm", "outcome shares (turn 1, mean over seeds)", "hallucination rate by bug class"],
        [[n, _last_shares(a["hallucination_rate_by_outcome"], skip_zero=True),
          _last_shares(a["hallucination_rate_by_bug_class"])] for n, a in arms.items()])]

    if r["comparisons"]:
        out += [Heading("Comparisons"), Para(f"Relative change of each arm's mean vs the baseline's: "
                                              f"(arm - baseline) / baseline, -48% = 48% fewer. {r['statistics']}."),
                Table(["metric", "arm", "baseline", "arm mean", "baseline mean", "relative change", "95% CI", "paired", "note"],
                      [[c["metric"], c["arm"], c["baseline"], fmt(c["arm_mean"], 3), fmt(c["baseline_mean"], 3),
                        signed_pct(c["relative_change"]), fmt_ci(c["ci95"], signed_pct), "yes" if c["paired"] else "no",
                        c["note"] or ""] for c in r["comparisons"]])]
    else:
        out += [Heading("Comparisons"), Para(f"None: the bench has no finished `{r['baseline']}` run to compare with.")]

    out += [Heading("Definitions"), Bullets([f"**{k}**: {v}" for k, v in r["definitions"].items()]),
            Para("Paper claims are read as relative changes: the CosmoCore paper's 45% faster self-correction "
                 "and 80 -> 44 cycles are the same measurement (44/80 - 1 = -45%), compared here on cycles to "
                 "zero error; COCOS's claims are directions only (its absolute Δ values are on other benchmarks)."),
            Para("Delta table versions read: " + ", ".join(f"{k} v{v}" for k, v in r["store_versions"].items()))]
    return out


def _effect(x: Any, unit: str) -> str:
    return NA if x is None else f"{x:+.2f} cycles" if unit == "cycles" else f"{x * 100:+.1f} pp"


def verdict_blocks(r: Mapping[str, Any]) -> list[Block]:
    """The answer first: the verdict table of ``claims`` and the design it rests on."""
    claims = r.get("claims") or []
    if not claims:
        return []
    d = r.get("design") or {}
    rows = [[c["claim"], f"{c['arm']} vs {c['baseline']}", c["split"] or NA, _effect(c["estimate"], c["unit"]),
             fmt_ci(c["ci95"], lambda x, u=c["unit"]: _effect(x, u)), _effect(c["mde"], c["unit"]).lstrip("+"),
             fmt(c["probability_of_improvement"]), f"**{c['verdict']}**", c["reason"]] for c in claims]
    return [Heading("Verdicts"), Table(["claim", "arms", "split", "estimate (arm - baseline)", "95% CI", "MDE",
                                        "P(improvement)", "verdict", "why"], rows),
            Para(f"Design: {d.get('arms')} arms, {d.get('seeds')} seeds, {d.get('cycles')} cycles; "
                 f"{d.get('practice_tasks')} practice, {d.get('dev_tasks')} dev and {d.get('test_tasks')} test tasks "
                 f"(held-out split `{d.get('held_out_split')}` scored at cycles {d.get('held_out_cycles')}), "
                 f"{d.get('samples_per_task')} sample(s) per task. Estimates are paired differences (pp = "
                 "percentage points); a verdict needs 3 paired seeds and a 95% half-width of at most 0.20 "
                 "(0.20 of the cycle budget for cycles); MDE is the smallest difference this design detects "
                 f"with 80% power. {r.get('claims_statistics', '')}.")] + _practice_and_test(r)


def _practice_and_test(r: Mapping[str, Any]) -> list[Block]:
    arms = {n: a for n, a in r["arms"].items() if "practice_cycles_to_zero_error" in a}
    if not arms:
        return []
    rows = []
    for n, a in arms.items():
        p, t = a["practice_cycles_to_zero_error"], a["test_hallucination_rate"]
        rows.append([n, ", ".join("censored" if v is None else str(v) for v in p["per_seed"]) or NA,
                     f"{p['censored']}/{p['runs']}", fmt(p["km_median"], 1), fmt(p["restricted_mean"], 2),
                     str(p["relapsed"]), pct(a["practice_bug_recurrence_rate"]["mean"]), pct(t["initial"]["mean"]), f"{pct(t['mean'])} (IQM {pct(t['iqm'])})",
                     pct(t["practised"]["mean"]), pct(t["unpractised"]["mean"])])
    split = next((a["test_hallucination_rate"]["split"] for a in arms.values()), None) or NA
    out: list[Block] = [Heading("Practice set and held-out split", 3), Table(
        ["arm", "practice cycles to zero error (per seed)", "censored", "KM median", "restricted mean", "relapsed",
         "practice bug recurrence", f"{split}: rate at first scoring", f"{split}: final rate", "practised classes", "unpractised classes"], rows),
        Para("Cycles to zero error: the first cycle at which every practice task's reply is correct (a later "
             "slip is counted under *relapsed*); censored runs enter the Kaplan-Meier median and the restricted "
             "mean (area under the survival curve up to the cycle budget). Rates are errors / executions over "
             "every scored sample at the run's last held-out cycle, mean over seeds.")]
    if "learning_curves" in r.get("plots", {}):
        out.append(Image(r["plots"]["learning_curves"], "learning curves: per-seed lines and paired difference"))
    return out


def _curve_cell(curve: Mapping[str, Any], c: int) -> str:
    if c >= len(curve["mean"]) or curve["mean"][c] is None:
        return NA
    return f"{pct(curve['mean'][c])} {fmt_ci(curve['ci95'][c], pct)}"


def _last_shares(keyed: Mapping[str, Mapping[str, Any]], skip_zero: bool = False) -> str:
    parts = []
    for k, curve in keyed.items():
        defined = [m for m in curve["mean"] if m is not None]
        if defined and not (skip_zero and defined[-1] == 0):
            parts.append(f"{k} {pct(defined[-1])}")
    return ", ".join(parts) or NA


# ------------------------------------------------------------------ renderers
def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(report: Mapping[str, Any]) -> str:
    lines: list[str] = []
    for b in blocks(report):
        if isinstance(b, Heading):
            lines += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, Para):
            lines += [b.text, ""]
        elif isinstance(b, Table):
            lines += ["| " + " | ".join(map(_md_cell, b.headers)) + " |", "|" + "---|" * len(b.headers)]
            lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in b.rows] + [""]
        elif isinstance(b, Image):
            lines += [f"![{b.alt}]({b.path})", ""]
        else:
            lines += [f"- {item}" for item in b.items] + [""]
    return "\n".join(lines)


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ccc;
padding:.3em .6em;text-align:left;vertical-align:top}th{background:#f3f3f3}img{max-width:100%;display:block;
margin:1em 0}code{background:#f3f3f3;padding:0 .2em}"""


def _inline(text: str) -> str:
    """Escape, then the two Markdown marks the blocks use: **bold** and `code`."""
    out, parts = [], _html.escape(text).split("`")
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f"<code>{part}</code>")
        else:
            bold = part.split("**")
            out.append("".join(f"<b>{s}</b>" if j % 2 else s for j, s in enumerate(bold)))
    return "".join(out)


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def html(report: Mapping[str, Any], run_dir: Path) -> str:
    """One HTML page with everything inlined (no external CSS, JS or images)."""
    body: list[str] = []
    for b in blocks(report):
        if isinstance(b, Heading):
            body.append(f"<h{b.level}>{_inline(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            body.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{_inline(h)}</th>" for h in b.headers)
            rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in b.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(b, Image):
            png = run_dir / b.path
            if png.exists():
                body.append(f'<img alt="{_html.escape(b.alt)}" src="{_data_uri(png)}">')
        else:
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.items) + "</ul>")
    title = _html.escape(f"CosmoCore bench {report.get('bench_id') or ''}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
