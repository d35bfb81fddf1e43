"""A built wheel, installed outside the checkout, carries the suites and runs the CLI.

The wheel is built from a copy of the sources (so the checkout gets no build/ folder) and
installed with ``--no-deps`` into a fresh venv; the dependencies come from this venv through
``PYTHONPATH`` (which is not a site dir, so this venv's editable install of the project is not
seen). That is also how spark-submit and Databricks hand pyspark to a driver.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # starts Spark, a model or a subprocess

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "README.md", "miniworld", "cosmocore", "pipelines", "tasks"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(dist)], check=True, capture_output=True, timeout=300)
    (built,) = dist.glob("cosmocore_miniworld-*.whl")
    return built


def test_wheel_carries_every_suite_and_the_entry_point(wheel) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    suites = {Path(n).name for n in names if n.startswith("miniworld/suites/files/")}
    assert suites == {p.name for p in (ROOT / "tasks").glob("*.yaml")}
    (entry,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "cosmocore = cosmocore.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
    assert not any(n.startswith(("tests/", "tasks/")) for n in names)


def test_installed_wheel_lists_the_smoke_suite(wheel, tmp_path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"], "COSMOCORE_CACHE": str(tmp_path / "cache")}
    where = subprocess.run([str(python), "-c", "import miniworld.suites.catalog as c; print(c.SUITES_DIR)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert Path(where.stdout.strip()).is_relative_to(env_dir), where.stdout  # not the checkout's tasks/
    out = subprocess.run([str(env_dir / "bin" / "cosmocore"), "tasks", "list", "--suite", "smoke", "--json"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    payload = json.loads(out.stdout)
    assert payload["suite"] == "smoke" and len(payload["tasks"]) >= 4
