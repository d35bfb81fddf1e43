"""The night's losses as pure functions, on hand-made tensors: each term against the same
quantity computed independently from its definition."""
from __future__ import annotations

import math

import pytest
import torch

from cosmocore.train.losses import (PPOCoefs, accumulated_reward, fix_mask, normalised, padded, ppo_loss,
                                    rloo_advantages, weighted_nll)

COEFS = PPOCoefs(clip_eps=0.2, ratio_cap=5.0, vf_coef=0.5, ent_coef=0.01, kl_beta=0.1)


def _batch():
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    logp = torch.tensor([[-1.0, -0.5, -2.0], [-0.3, -1.2, 0.0]])
    behaviour = torch.tensor([[-1.1, -0.5, -1.0], [-0.3, -1.0, 0.0]])
    ref = torch.tensor([[-1.0, -0.7, -2.5], [-0.2, -1.2, 0.0]])
    entropy = torch.tensor([[0.5, 0.4, 0.3], [0.2, 0.1, 0.0]])
    return logp, behaviour, ref, entropy, mask


def test_ppo_loss_terms_follow_their_definitions() -> None:
    logp, behaviour, ref, entropy, mask = _batch()
    values, returns = torch.tensor([0.4, 0.6]), torch.tensor([1.0, 0.0])
    adv = torch.tensor([1.0, -1.0])
    a = adv.tolist()
    loss, stats, resid = ppo_loss(logp, behaviour, ref, entropy, mask, values, returns, adv, torch.ones(2), COEFS)
    pg, kl, ent = [], [], []
    for i in range(2):
        n = int(mask[i].sum())
        r = [math.exp(min(float(logp[i, t] - behaviour[i, t]), math.log(COEFS.ratio_cap))) for t in range(n)]
        pg.append(sum(-min(x * a[i], min(max(x, 0.8), 1.2) * a[i]) for x in r) / n)
        d = [float(ref[i, t] - logp[i, t]) for t in range(n)]
        kl.append(sum(x * (math.exp(y) - y - 1) for x, y in zip(r, d)) / n)
        ent.append(float(entropy[i, :n].sum()) / n)
    v_loss = float(((values - returns) ** 2).mean())
    expected = sum(pg) / 2 + 0.5 * v_loss - 0.01 * sum(ent) / 2 + 0.1 * sum(kl) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert stats["kl_ref"] == pytest.approx(sum(kl) / 2, rel=1e-5)
    assert stats["clip_frac"] == pytest.approx((1 / 3 + 0) / 2)  # only exp(-1) is outside [0.8, 1.2]
    assert resid.tolist() == pytest.approx([0.6, -0.6])


def test_ppo_loss_without_advantages_uses_normalised_residuals_and_ignores_padding() -> None:
    logp, behaviour, ref, entropy, mask = _batch()
    values, returns = torch.tensor([0.4, 0.6]), torch.tensor([1.0, 0.0])
    implicit = ppo_loss(logp, behaviour, ref, entropy, mask, values, returns, None, torch.ones(2), COEFS)[0]
    explicit = ppo_loss(logp, behaviour, ref, entropy, mask, values, returns, normalised(returns - values),
                        torch.ones(2), COEFS)[0]
    assert implicit.item() == pytest.approx(explicit.item())
    logp2 = logp.clone()
    logp2[1, 2] = -1e4  # a padded position: no effect, no overflow
    again = ppo_loss(logp2, behaviour, ref, entropy, mask, values, returns, None, torch.ones(2), COEFS)[0]
    assert again.item() == pytest.approx(implicit.item())


def test_ppo_gradient_vanishes_outside_the_clip_range() -> None:
    mask = torch.ones(1, 1)
    logp = torch.tensor([[0.0]], requires_grad=True)
    behaviour = torch.tensor([[-1.0]])  # ratio e > 1.2 with a positive advantage: clipped
    coefs = PPOCoefs(0.2, 5.0, 0.0, 0.0, 0.0)
    loss, _, _ = ppo_loss(logp, behaviour, logp.detach(), torch.zeros(1, 1), mask, torch.zeros(1), torch.zeros(1),
                          torch.tensor([1.0]), torch.ones(1), coefs)
    loss.backward()
    assert logp.grad.abs().item() == 0.0


def test_fix_mask_marks_replaced_inserted_and_after_deleted_tokens() -> None:
    assert fix_mask([1, 2, 3, 4], [1, 9, 3, 4]) == [0, 1, 0, 0]  # replaced
    assert fix_mask([1, 3, 4], [1, 2, 3, 4]) == [0, 1, 0, 0]  # inserted
    assert fix_mask([1, 2, 3, 4], [1, 3, 4]) == [0, 1, 0]  # deleted: the token after it
    assert fix_mask([5, 6], [5, 6]) == [0, 0]


def test_weighted_nll_weights_fix_tokens() -> None:
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    assert weighted_nll(logp, mask, [], 1.0).item() == pytest.approx(7.0 / 5)
    got = weighted_nll(logp, mask, [[0, 1, 0], [1, 0]], 3.0).item()
    assert got == pytest.approx((1 + 3 * 2 + 3 + 3 * 0.5 + 0.5) / (1 + 3 + 1 + 3 + 1))


def test_cocos_accumulated_reward_and_rloo() -> None:
    assert accumulated_reward(0.5, None, 0.9) == 0.5
    assert accumulated_reward(0.2, 1.0, 0.5) == pytest.approx(0.5 * 0.2 + 0.8)
    adv = rloo_advantages([1.0, 0.0, 0.5, 0.3], ["a", "a", "a", "b"])
    assert adv.tolist() == pytest.approx([0.75, -0.75, 0.0, 0.3 - 0.45])


def test_padded_right_pads_with_zeros() -> None:
    out = padded([[1.0], [2.0, 3.0]], torch.zeros(2, 3))
    assert out.tolist() == [[1.0, 0.0, 0.0], [2.0, 3.0, 0.0]]
