"""Job kinds for the job tests; a `keel worker` subprocess imports this module through
KEEL_JOBS_IMPORTS=jobkinds (with this folder on PYTHONPATH)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from keel.automation.kinds import register_kind

log = logging.getLogger("keel.tests.jobs")


def count(_services: Any, args: dict[str, Any]) -> dict[str, Any]:
    """Sleep ``seconds``, then append one line to ``path``: the side effect tests count."""
    log.info("counting into %s", args["path"])
    time.sleep(float(args.get("seconds", 0)))
    with Path(args["path"]).open("a") as out:
        out.write(f"{args.get('tag', '')} {os.getpid()}\n")
    return {"pid": os.getpid()}


def flaky(_services: Any, args: dict[str, Any]) -> str:
    """Fail until ``path`` holds ``succeed_after`` lines, one line per call."""
    path = Path(args["path"])
    with path.open("a") as out:
        out.write("x\n")
    calls = len(path.read_text().splitlines())
    if calls <= int(args["succeed_after"]):
        raise RuntimeError(f"flaky failure {calls}")
    return "ok"


def refuse(_services: Any, args: dict[str, Any]) -> str:
    """Append one line to ``path``, then refuse the arguments as keel refuses bad input."""
    from keel.errors import InvalidInput

    with Path(args["path"]).open("a") as out:
        out.write("x\n")
    raise InvalidInput("limit: expected a number", field="limit")


register_kind("test.count", count)
register_kind("test.refuse", refuse)
register_kind("test.flaky", flaky)
