"""The docs examples' world, built once, and the files' sessions, two at a time."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from tests.docs._blocks import parse_blocks
from tests.docs._plan import ROOT, Zygote, build_world, run_session, steps_of

Outcome = tuple[int, str]


@pytest.fixture(scope="session")
def docs_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded KEEL_HOME (``home``) and the files the docs name (``files``)."""
    world = tmp_path_factory.mktemp("docs-world")
    build_world(world)
    return world


@pytest.fixture(scope="session")
def docs_sessions(
    request: pytest.FixtureRequest, docs_world: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[Path, Future[Outcome]]]:
    """Each selected file's session, started at once on two workers (2 cores: the files are
    independent), so a file's test waits only for its own result."""
    selected = [
        item.callspec.params["doc"]
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_doc_examples_run"
    ]
    pool = ThreadPoolExecutor(max_workers=2)
    zygote = Zygote(docs_world)
    futures: dict[Path, Future[Outcome]] = {}
    for doc in selected:
        future: Future[Outcome] = Future()
        try:
            steps = steps_of(parse_blocks(doc, ROOT))
        except Exception as exc:  # reported by that file's test
            future.set_exception(exc)
        else:
            if steps:
                tmp = tmp_path_factory.mktemp(doc.stem)
                future = pool.submit(run_session, steps, docs_world, tmp, zygote)
            else:  # every block is illustrative (each says why), or there is none
                future.set_result((0, "no block runs"))
        futures[doc] = future
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)
    zygote.close()
