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
