"""The sum tree behind the replay buffer's proportional sampling.

Kept apart from the buffer because it is a general data structure (weighted leaves, batched
stratified draws) with no knowledge of episodes, bins or priorities, and is tested on its own.
"""

from __future__ import annotations

import numpy as np


class SumTree:
    """Sum tree over ``parts`` equal leaf ranges in one flat numpy array, vectorised over a batch.

    Hand-written because no library fits: cpprb's sum tree is reachable only through its own
    FIFO-evicting buffer (we need rank-based eviction, arbitrary slot writes and two weighted
    views) and is a dev-only dependency; TorchRL's compiled one fails to load beside torch 2.13
    CPU; ``numpy.random.choice(p=...)`` is O(N) per draw. Speed comes from walking a whole batch
    down the tree together (one numpy call per level and step) and from cutting the tree at level
    ``top``: the 2^top subtree roots are searched with one ``cumsum`` + ``searchsorted``, so no
    update ever touches the levels above them. Part ``k`` (the main view, the Dream Queue view)
    owns leaves ``[k*S, (k+1)*S)``, so one ``set`` call updates both views of a slot.
    """

    def __init__(self, capacity: int, parts: int = 1, top: int = 14) -> None:
        if parts & (parts - 1):
            raise ValueError("parts must be a power of two")
        self.part_size = 1 << max(1, int(np.ceil(np.log2(max(2, capacity)))))
        self.parts = parts
        self.n_leaves = parts * self.part_size
        self.depth = int(np.log2(self.n_leaves))
        self.top = min(top, self.depth)
        self.roots_per_part = (1 << self.top) // parts
        self.tree = np.zeros(2 * self.n_leaves, dtype=np.float64)

    def _roots(self, part: int) -> np.ndarray:
        lo = (1 << self.top) + part * self.roots_per_part
        return self.tree[lo : lo + self.roots_per_part]

    def total(self, part: int = 0) -> float:
        return float(self._roots(part).sum())

    def leaves(self, idx: np.ndarray, part: int = 0) -> np.ndarray:
        return self.tree.take(np.asarray(idx, dtype=np.int64) + (self.n_leaves + part * self.part_size))

    def set(self, idx: np.ndarray, weights: np.ndarray | float) -> None:
        """Set leaves (global index ``part*part_size + slot``) and recompute their ancestors.

        Duplicate indices are harmless: a parent is recomputed from its children, never
        incremented, so no round-off accumulates either.
        """
        t = self.tree
        i = np.asarray(idx, dtype=np.int64) + self.n_leaves
        if i.size == 0:
            return
        t[i] = weights
        if i.size > self.n_leaves >> 6:  # bulk write: recomputing whole levels is cheaper
            for level in range(self.depth - 1, self.top - 1, -1):
                lo, hi = 1 << level, 1 << (level + 1)
                np.add(t[2 * lo : 2 * hi : 2], t[2 * lo + 1 : 2 * hi : 2], out=t[lo:hi])
            return
        for _ in range(self.depth - self.top):
            i >>= 1
            left = i << 1
            t[i] = t.take(left) + t.take(left + 1)

    def sample(self, n: int, rng: np.random.Generator, part: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
        """``n`` stratified draws proportional to the weights of ``part``: (slots, weights, total)."""
        roots = self._roots(part)
        cs = np.cumsum(roots)
        total = float(cs[-1])
        if n <= 0 or total <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0), total
        u = (np.arange(n) + rng.random(n)) * (total / n)
        idx, w = self._find(u, cs, roots, part)
        bad = w <= 0  # float round-off can land on an empty leaf: redraw those few
        while bad.any():
            idx[bad], w[bad] = self._find(rng.random(int(bad.sum())) * total, cs, roots, part)
            bad = w <= 0
        return idx, w, total

    def _find(self, u: np.ndarray, cs: np.ndarray, roots: np.ndarray, part: int) -> tuple[np.ndarray, np.ndarray]:
        t = self.tree
        j = np.searchsorted(cs, u, side="right")
        np.minimum(j, len(roots) - 1, out=j)
        u = u - (cs[j] - roots[j])
        i = j + ((1 << self.top) + part * self.roots_per_part)
        for _ in range(self.depth - self.top):
            i <<= 1
            left = t.take(i)
            right = u >= left
            u -= left * right
            i += right
        return i - (self.n_leaves + part * self.part_size), t.take(i)
