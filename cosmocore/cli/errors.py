"""How the CLI fails: the exit-status contract (2 bad input, 1 internal error) and, with ``--json``,
one JSON object on stdout that a script can read: ``{"error", "input", "exit_status"}``.

``input`` names what was wrong (the option value, the file, the task id) when the code that
refused it knows; otherwise it is the command line as typed, which still tells a batch script
which of its calls failed.
"""
from __future__ import annotations

import json
import logging
import sys
from contextlib import contextmanager
from typing import Iterator

import typer


class BadInput(Exception):
    """A user error: printed as one line, exit status 2. ``input`` is the offending value."""

    def __init__(self, message: str, input: str | None = None) -> None:  # noqa: A002 - the JSON key's name
        super().__init__(message)
        self.input = input


def emit(payload: dict) -> None:
    """One JSON object on stdout (the ``--json`` contract)."""
    sys.stdout.write(json.dumps(payload, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def line(text: str) -> None:
    """One unwrapped line on stderr (rich would wrap it at the terminal width)."""
    sys.stderr.write(" ".join(str(text).split()) + "\n")
    sys.stderr.flush()


def _fail(message: str, status: int, json_out: bool, input: str | None) -> typer.Exit:  # noqa: A002
    line(message)
    if json_out:
        typed = " ".join(sys.argv[1:])
        emit({"error": " ".join(message.split()).removeprefix("error: "), "input": input or typed,
              "exit_status": status})
    return typer.Exit(status)


@contextmanager
def errors(json_out: bool = False) -> Iterator[None]:
    """Map exceptions to the exit-status contract (and, with ``--json``, to a JSON error)."""
    from miniworld.sandbox.server import SparkStartError
    from miniworld.sandbox.spark_sandbox import SparkUnavailable
    from miniworld.suites.catalog import SuiteError

    try:
        yield
    except (BadInput, SuiteError, SparkStartError) as exc:
        raise _fail(f"error: {exc}", 2, json_out, getattr(exc, "input", None)) from None
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        raise _fail("interrupted", 130, json_out, None) from None
    except SparkUnavailable as exc:  # not our bug and not bad input: the engine went away
        raise _fail(f"error: Spark is unavailable ({exc}); nothing unscored was stored: once Spark is back, "
                    "continue a train or bench run with --resume", 1, json_out, None) from None
    except Exception as exc:  # noqa: BLE001 - anything else is our bug: say so, exit 1
        logging.getLogger("cosmocore").debug("internal error", exc_info=True)
        raise _fail(f"internal error: {type(exc).__name__}: {exc}", 1, json_out, None) from None
