"""A user's pipeline file as written becomes a sandbox candidate: the script around the transform
is blanked (line numbers kept), and what the gate still refuses is named at the file's own line."""
from __future__ import annotations

from pathlib import Path

import pytest

from miniworld.sandbox import gate
from miniworld.sandbox.userfile import UserFileError, prepare

SESSIONS = Path(__file__).resolve().parents[2] / "data" / "user_pipelines" / "sessions.py"


def test_a_realistic_script_passes_the_gate_with_its_lines_in_place() -> None:
    source = SESSIONS.read_text()
    prepared = prepare(source)
    assert prepared.function == "sessionize"  # the file's one DataFrame -> DataFrame function
    assert gate.check(prepared.code) == []
    kept = prepared.code.splitlines()
    for i, line in enumerate(source.splitlines()):
        if "SESSION_GAP" in line or "F.lag" in line or "return sessions" in line:
            assert kept[i] == line, f"line {i + 1} moved or changed"
    body = prepared.code.split('"""', 2)[2]  # after the module docstring
    assert "__main__" not in body and "SparkSession" not in body
    assert "spark.read" not in prepared.code  # the loader only the script used
    assert prepared.code.rstrip().endswith("transform = sessionize")
    assert "from pyspark.sql import Window" in prepared.code and "Annotated" not in prepared.code


def test_what_is_still_refused_names_the_files_line(tmp_path: Path) -> None:
    source = SESSIONS.read_text().replace(
        "    by_user = Window", "    import os\n    by_user = Window", 1)
    line = source.splitlines().index("    import os") + 1
    violations = gate.check(prepare(source).code)
    assert [v.line for v in violations] == [line] and "'os'" in violations[0].detail


def test_function_choice_and_spark_parameter() -> None:
    source = ("from pyspark.sql import SparkSession\n\n\ndef a(df):\n    return df\n\n\n"
              "def b(spark, df):\n    return df.limit(1)\n")
    with pytest.raises(UserFileError, match="--function NAME"):
        prepare(source)
    with pytest.raises(UserFileError, match="no top-level function 'c'.*a, b"):
        prepare(source, "c")
    b = prepare(source, "b")
    assert "def transform(**inputs):\n    return user_function(spark=spark, **inputs)" in b.code
    assert gate.check(b.code) == [] and b.code.splitlines()[0] == ""  # SparkSession import unused: blanked
    plain = "def transform(df):\n    return df\n"
    assert prepare(plain).code == plain
    assert prepare("def transform(:\n").code == "def transform(:\n"  # the sandbox reports the syntax error
