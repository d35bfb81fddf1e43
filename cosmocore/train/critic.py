"""The critic: V(prompt), a linear head on the policy's pooled prompt state, refitted in closed
form each day. Its TD errors drive arousal and replay priority."""
from __future__ import annotations

import torch

#: Executed attempts the critic is refitted on each day: the newest, as the policy (and so its
#: prompt states) drifts; a 4096-row least squares is milliseconds.
CRITIC_WINDOW = 4096


class ValueHead(torch.nn.Module):
    """V(prompt): a linear critic on the policy's pooled prompt state."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(hidden, 1)
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.constant_(self.linear.bias, 0.5)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.linear(pooled.float()).squeeze(-1)

    @torch.no_grad()
    def fit(self, states: torch.Tensor, returns: torch.Tensor, ridge: float) -> None:
        """Least-squares ``V = w.s + b`` over executed attempts, in closed form.

        Why not only gradient steps: at the policy's learning rate, a quick run's handful of night
        steps leaves the critic at its 0.5 init, so every |TD| is ~0.5 and arousal (|TD| normalised)
        cannot tell a surprising failure (on a task the policy used to solve) from a routine one.
        The penalty is ``ridge`` times the mean squared norm of the centred states (so it does not
        depend on the model's width); the dual form is used while there are fewer states than dims.
        """
        x, y = states.double().cpu(), returns.double().cpu()
        x_mean, y_mean = x.mean(0), y.mean()
        xc, yc = x - x_mean, y - y_mean
        lam = ridge * max(float((xc * xc).sum(-1).mean()), 1e-12)
        if len(xc) <= xc.shape[1]:
            w = xc.T @ torch.linalg.solve(xc @ xc.T + lam * torch.eye(len(xc), dtype=xc.dtype), yc)
        else:
            w = torch.linalg.solve(xc.T @ xc + lam * torch.eye(xc.shape[1], dtype=xc.dtype), xc.T @ yc)
        self.linear.weight.copy_(w.unsqueeze(0))
        self.linear.bias.fill_(float(y_mean - x_mean @ w))


def refit(head: ValueHead, data: tuple[torch.Tensor, torch.Tensor] | None, states: torch.Tensor,
          rewards: torch.Tensor, ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Add a day's (prompt state, reward) pairs to the critic's window and refit on it; returns
    the new window (kept in the checkpoint)."""
    new = (states.float(), rewards.float())
    if data is not None:
        new = tuple(torch.cat([old, add])[-CRITIC_WINDOW:] for old, add in zip(data, new))
    head.fit(*new, ridge=ridge)
    return new
