"""Code-change triggers (R-CICD-02): which code a training used, and whether it changed.

A retraining records on its run and its registered version the SHA-256 of the train
function's source file(s) (``keel.retrain.code_hash``) and a commit
(``keel.retrain.commit``): the one a CI system posted to ``POST /v1/triggers/{name}/fire``,
else the git HEAD of the work tree holding the train module, if any. The ``code`` condition
compares the train function's source now, and a posted commit, with what the newest version
recorded.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationError

from keel._models import Entity, invalid_input
from keel.errors import InvalidInput

if TYPE_CHECKING:
    from keel.automation.triggers.conditions import Outcome
    from keel.automation.triggers.context import EvaluationContext
    from keel.automation.triggers.models import Condition

__all__ = [
    "CODE_HASH_TAG",
    "CODE_TAGS",
    "COMMIT_TAG",
    "FIRED_BY_TAG",
    "FireEvent",
    "code_condition",
    "code_hash",
    "parse_fire_event",
    "retrain_code_tags",
]

CODE_HASH_TAG = "keel.retrain.code_hash"
COMMIT_TAG = "keel.retrain.commit"
FIRED_BY_TAG = "keel.retrain.fired_by"
#: The tags a retraining copies from its run onto the version it registers.
CODE_TAGS = frozenset({CODE_HASH_TAG, COMMIT_TAG, FIRED_BY_TAG})


class FireEvent(Entity):
    """What a CI system posts to ``fire``: the commit it built and who asked."""

    commit: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{7,64}$")
    actor: str | None = Field(default=None, min_length=1, max_length=200)
    ref: str | None = Field(default=None, min_length=1, max_length=500)


def parse_fire_event(data: Any) -> FireEvent:
    """The checked body of a fire request (REST, both SDK transports and the CLI);
    InvalidInput naming the field otherwise."""
    if data is None:
        return FireEvent()
    if not isinstance(data, Mapping):
        raise InvalidInput("body: expected a mapping with commit and actor", field="body")
    try:
        return FireEvent.model_validate(dict(data))
    except ValidationError as exc:
        raise invalid_input(exc) from None


def _source_files(path: str) -> list[Path]:
    """The source files of the train function at ``module:function``: its module's and,
    when defined elsewhere (a re-export), the function's own."""
    from keel.automation.retrain.spec import load_train_function

    function = load_train_function(path)
    module = importlib.import_module(path.partition(":")[0])
    files = set()
    for item in (module, function):
        try:
            found = inspect.getsourcefile(item)
        except TypeError:  # a builtin or C extension: no source to hash
            found = None
        if found:
            files.add(Path(found).resolve())
    return sorted(files)


def code_hash(path: str) -> str | None:
    """SHA-256 over the train function's source file(s), read now (None without source)."""
    files = _source_files(path)
    if not files:
        return None
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def retrain_code_tags(path: str, source: Mapping[str, Any] | None) -> dict[str, str]:
    """The tags a retraining records: code hash, commit (posted, else the train module's
    git HEAD) and who fired it."""
    from keel.tracking.environment import git_state

    tags: dict[str, str] = {}
    digest = code_hash(path)
    if digest is not None:
        tags[CODE_HASH_TAG] = digest
    commit = (source or {}).get("commit")
    if not commit:
        files = _source_files(path)
        commit = git_state(files[0].parent)[0] if files else None
    if commit:
        tags[COMMIT_TAG] = str(commit)
    if (source or {}).get("actor"):
        tags[FIRED_BY_TAG] = str((source or {})["actor"])
    return tags


def code_condition(ctx: EvaluationContext, path: str, cond: Condition) -> Outcome:
    """Met when the train code's hash differs from the newest version's, or a commit was
    posted that differs from the one the newest version recorded."""
    from keel.automation.triggers.conditions import Outcome

    train = ctx.trigger.retrain.get("train")
    if not train:
        return Outcome(path, "code", False, None, None, "not evaluated: no retrain.train")
    versions = ctx.services.registry.list_versions(ctx.trigger.model)
    newest = max(versions, key=lambda v: v.created_at_ms, default=None)
    now_hash = code_hash(str(train))
    posted = (ctx.event or {}).get("commit")
    details: dict[str, Any] = {"train": train, "code_hash": now_hash, "posted_commit": posted}
    if newest is None:
        return Outcome(path, "code", False, None, None, "no version trained yet", None, details)
    was_hash = newest.tags.get(CODE_HASH_TAG)
    was_commit = newest.tags.get(COMMIT_TAG) or _run_commit(ctx.services, newest.run_id)
    details.update(version=newest.version, trained_hash=was_hash, trained_commit=was_commit)
    changed = []
    if was_hash is not None and now_hash is not None and was_hash != now_hash:
        changed.append(f"{train} source changed since v{newest.version}")
    if posted and was_commit and not _same_commit(posted, was_commit):
        changed.append(f"commit {posted[:12]} differs from v{newest.version}'s {was_commit[:12]}")
    if changed:
        reason = "; ".join(changed)
    elif was_hash is None and not (posted and was_commit):
        reason = f"v{newest.version} recorded no code hash: nothing to compare with"
    else:
        reason = f"train code unchanged since v{newest.version}"
    met = bool(changed)
    return Outcome(path, "code", met, float(len(changed)), None, reason, None, details)


def _run_commit(services: Any, run_id: str | None) -> str | None:
    """The git commit the version's run recorded (a version registered by hand)."""
    from keel.errors import NotFound

    if not run_id:
        return None
    try:
        commit: str | None = services.tracking.get_run(run_id).code_commit
    except NotFound:
        return None
    return commit


def _same_commit(a: str, b: str) -> bool:
    """Equal commits, one possibly abbreviated."""
    a, b = a.lower(), b.lower()
    return a.startswith(b) or b.startswith(a)
