"""The night's losses as pure functions of tensors: the clipped policy gradient with its value,
entropy and importance-weighted KL terms, the corrective NLL with fix tokens weighted, and
COCOS's accumulated reward with its RLOO advantages. The trainer gathers the tensors (forwards
of the policy and the reference) and calls these; each is unit-tested on hand-made tensors
(tests/cosmocore/train/test_losses.py)."""
from __future__ import annotations

import difflib
from dataclasses import dataclass

import torch

from miniworld.checks import accumulated_reward as cocos_return


@dataclass(frozen=True)
class PPOCoefs:
    """The clipped PG loss's settings (``TrainConfig`` holds them with their help text)."""

    clip_eps: float
    ratio_cap: float
    vf_coef: float
    ent_coef: float
    kl_beta: float


def padded(rows: list[list[float]], like: torch.Tensor) -> torch.Tensor:
    """Per-row token values (behaviour log-probs) right-padded with zeros to ``like``'s shape."""
    out = torch.zeros_like(like)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=like.dtype, device=like.device)
    return out


def normalised(x: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit std over the batch (unchanged when it has one element or no spread)."""
    if len(x) > 1 and x.std() > 1e-8:
        return (x - x.mean()) / (x.std() + 1e-8)
    return x


def ppo_loss(logp: torch.Tensor, behaviour: torch.Tensor, ref_logp: torch.Tensor, entropy: torch.Tensor,
             mask: torch.Tensor, values: torch.Tensor, returns: torch.Tensor, advantages: torch.Tensor | None,
             weights: torch.Tensor, c: PPOCoefs) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """Clipped PG + value + entropy + KL over a minibatch, token means per sequence. Without
    ``advantages`` they are ``r - V(s)`` of this same forward, normalised over the batch (no
    separate baseline pass). Returns the loss, its statistics and the new ``r - V(s)``."""
    log_ratio = (logp - behaviour) * mask
    ratio = torch.exp(log_ratio).clamp(max=c.ratio_cap)  # truncated importance ratio
    if advantages is None:
        advantages = normalised((returns - values).detach().float())
    adv = advantages.to(logp.device).unsqueeze(-1)
    pg = -torch.min(ratio * adv, ratio.clamp(1 - c.clip_eps, 1 + c.clip_eps) * adv)
    tokens = mask.sum(-1).clamp_min(1.0)

    def per_seq(x: torch.Tensor) -> torch.Tensor:
        return (x * mask).sum(-1) / tokens

    w = weights.to(logp.device)
    pg_loss = (w * per_seq(pg)).mean()
    delta = (ref_logp - logp) * mask  # masked first: padding must not overflow exp()
    # k3 estimator (always >= 0), importance-weighted like the PG term: replayed tokens were
    # sampled by an older policy, and unweighted, exp(delta) on a token the policy has since
    # pushed far down explodes (its gradient then filling the clipped norm); weighted, a
    # token's pull is bounded by ref / behaviour.
    kl = per_seq(ratio.detach() * (torch.exp(delta) - delta - 1.0)).mean()
    v_loss = (w * (values - returns) ** 2).mean()
    mean_entropy = per_seq(entropy).mean()
    loss = pg_loss + c.vf_coef * v_loss - c.ent_coef * mean_entropy + c.kl_beta * kl
    with torch.no_grad():
        approx_kl = per_seq((ratio - 1) - log_ratio).mean().item()
        clip_frac = per_seq(((ratio - 1).abs() > c.clip_eps).float()).mean().item()
        var = returns.var(unbiased=False).item()
        ev = 1 - (returns - values).var(unbiased=False).item() / var if var > 0 else float("nan")
    stats = {"loss": loss.item(), "pg_loss": pg_loss.item(), "value_loss": v_loss.item(),
             "update_entropy": mean_entropy.item(), "kl_ref": kl.item(), "approx_kl": approx_kl,
             "clip_frac": clip_frac, "explained_variance": ev}
    return loss, stats, (returns - values).detach()


def fix_mask(buggy_ids: list[int], ref_ids: list[int]) -> list[int]:
    """1 on the reference completion's tokens a copy of the buggy code would get wrong: those
    replaced or inserted by the fix, and the token after a deletion. Hand-written over difflib:
    the loss needs token positions, which no diff library reports for us."""
    out = [0] * len(ref_ids)
    for tag, _, _, j1, j2 in difflib.SequenceMatcher(None, buggy_ids, ref_ids, autojunk=False).get_opcodes():
        if tag in ("replace", "insert"):
            out[j1:j2] = [1] * (j2 - j1)
        elif tag == "delete" and j1 < len(ref_ids):
            out[j1] = 1
    return out


def weighted_nll(logp: torch.Tensor, mask: torch.Tensor, fix_masks: list[list[int]], fix_weight: float) -> torch.Tensor:
    """Token-mean NLL of reference completions, the fix's tokens (``fix_mask``) weighted
    ``fix_weight``: most of a fix is a copy of the prompt's code, the few changed tokens are
    what the model must learn."""
    weights = mask.clone()
    if fix_weight != 1.0:
        for i, fm in enumerate(fix_masks):
            fix = torch.tensor(fm, dtype=weights.dtype, device=weights.device)
            weights[i, : len(fix)] += (fix_weight - 1.0) * fix
    return -(logp * weights).sum() / weights.sum()


def accumulated_reward(r1: float, r2: float | None, gamma: float) -> float:
    """COCOS's return (``miniworld.checks.accumulated_reward``); a one-turn episode returns ``r1``."""
    return r1 if r2 is None else cocos_return(r1, r2, gamma)


def rloo_advantages(returns: list[float], groups: list[str]) -> torch.Tensor:
    """RLOO: each return minus the mean of the other returns of its group (its task), or minus
    the batch mean when it is alone in its group."""
    rets = torch.tensor(returns, dtype=torch.float32)
    adv = torch.zeros_like(rets)
    for i, g in enumerate(groups):
        others = [returns[j] for j, h in enumerate(groups) if h == g and j != i]
        base = sum(others) / len(others) if others else float(rets.mean())
        adv[i] = rets[i] - base
    return adv
