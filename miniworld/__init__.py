"""Mini-World: PySpark bug-fixing tasks, the sandbox that runs candidate code, and a Gymnasium env.

The env is registered with Gymnasium as ``MiniWorld/PySparkBugFix-v0``:

    import gymnasium
    import miniworld
    env = gymnasium.make("MiniWorld/PySparkBugFix-v0", suite="smoke")   # or miniworld.make(suite="smoke")

``gymnasium.make("miniworld:MiniWorld/PySparkBugFix-v0", ...)`` works whatever was imported first.
This package imports neither Gymnasium nor Spark by itself: the sandbox's confined child processes
(one per plain-Python candidate) import from it, and Gymnasium's import (~0.2 s) would slow every
one. So ``import miniworld`` registers the env when Gymnasium is already loaded, and importing
:mod:`miniworld.env` (which ``miniworld.make`` does) always registers it.
"""
from __future__ import annotations

import sys
from typing import Any

ENV_ID = "MiniWorld/PySparkBugFix-v0"


def register() -> None:
    """Register ``MiniWorld/PySparkBugFix-v0`` with Gymnasium (idempotent)."""
    import gymnasium

    if ENV_ID not in gymnasium.registry:
        gymnasium.register(id=ENV_ID, entry_point="miniworld.env:make")


def __getattr__(name: str) -> Any:
    """``miniworld.make`` without importing Spark and the sandbox at package import."""
    if name == "make":
        from miniworld.env import make

        return make
    raise AttributeError(f"module 'miniworld' has no attribute {name!r}")


if "gymnasium" in sys.modules:
    register()
