"""Shared fixtures: ONE local Spark Connect server and sandbox pool per test session, and the
smoke suite verified once on it (in a session-private cache, so tests never trust a stale one)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The longest modules, longest first (seconds measured with 2 workers, 2026-12-03). The README's
# test command hands whole modules to 2 workers in collection order (--dist loadscope
# --no-loadscope-reorder): starting these first keeps one long module from running alone at the end.
LONGEST_FIRST = (
    "cosmocore/bench/test_bench.py",             # ~250: a smoke bench killed and resumed
    "cosmocore/train/test_crash.py",             # ~200: one run killed at four points
    "cosmocore/train/test_trainer.py",           # ~200
    "miniworld/sandbox/test_spark_restart.py",   # ~150: Spark servers killed and restarted
    "cosmocore/cli/test_notebooks.py",           # ~150
    "cosmocore/cli/test_spark_job.py",           # ~90: spark-submit
    "cosmocore/cli/test_run_user_file.py",       # ~90
    "test_packaging.py",                         # ~70: a wheel built and installed
    "cosmocore/bench/test_distributed.py",       # ~70
    "miniworld/sandbox/test_spark_remote.py",    # ~70
    "miniworld/suites/test_import.py",           # ~60
    "cosmocore/cli/test_cli.py",                 # ~60
    "miniworld/test_trl_example.py",             # ~55
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules in this order: the longest (above), then the other slow ones, then the fast ones
    as filler; a module's own tests keep their order (the sort is stable and keyed per module)."""
    tests = Path(__file__).resolve().parent
    slow_modules = {item.path for item in items if item.get_closest_marker("slow")}

    def rank(item: pytest.Item) -> int:
        name = item.path.relative_to(tests).as_posix() if item.path.is_relative_to(tests) else ""
        if name in LONGEST_FIRST:
            return LONGEST_FIRST.index(name)
        return len(LONGEST_FIRST) + (item.path not in slow_modules)

    items.sort(key=rank)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cosmocore-cache")
    os.environ["COSMOCORE_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def sandbox(cache_dir):
    """A real local Spark Connect server (confined where the OS allows) and two workers."""
    from miniworld.sandbox.spark_sandbox import Sandbox

    box = Sandbox(workers=2, timeout_s=20.0)
    yield box
    box.close()


@pytest.fixture(scope="session")
def smoke_suite(cache_dir):
    from miniworld.suites import catalog

    return catalog.load_suite("smoke")


@pytest.fixture(scope="session")
def smoke_tasks(sandbox, smoke_suite):
    """The smoke suite, verified on Spark (references run twice, mutants once)."""
    from miniworld.suites import catalog

    tasks = catalog.load_tasks(smoke_suite, sandbox)
    assert tasks, "the smoke suite kept no task"
    return tasks
