"""What a served interleaving request is (R-DEP-18): the body of ``POST
/v1/deployments/{name}/rank`` and ``/clicks``, checked by the route and by the SDK on both
transports with the same validators (:func:`check_rank`, :func:`check_clicks`), and the
stored impression (:class:`Impression`).

Item ids are strings or integers; two ids that read the same as text (``1`` and ``"1"``)
are the same item, so a click names an item by either spelling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, model_validator

from keel._models import invalid_input
from keel.errors import InvalidInput
from keel.serving.armroutes import MAX_ROUTING_KEY

__all__ = [
    "ClicksRequest",
    "Impression",
    "ItemId",
    "MAX_CANDIDATES",
    "RankRequest",
    "check_clicks",
    "check_rank",
    "item_key",
]

#: Candidates of one rank request at most (each is scored by both arms).
MAX_CANDIDATES = 1000
#: Impression ids: what a page view or request id looks like, never a document.
_IMPRESSION_ID = r"^[A-Za-z0-9_.:\-]{1,64}$"
ItemId = StrictInt | Annotated[str, Field(min_length=1, max_length=256)]


def item_key(item: Any) -> str:
    """The text an item id is matched by (``1`` and ``"1"`` are one item)."""
    return str(item)


class RankRequest(BaseModel):
    """The candidates to rank: rows as for predict, their ids (default: the row index),
    how many to show (``k``, default all), the routing key and the impression id (default:
    a new random one; a repeat with the same id and candidates returns the same list)."""

    model_config = ConfigDict(extra="forbid")
    instances: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_CANDIDATES)
    item_ids: list[ItemId] | None = None
    k: int | None = Field(default=None, ge=1, le=MAX_CANDIDATES)
    routing_key: (
        StrictInt | Annotated[str, Field(min_length=1, max_length=MAX_ROUTING_KEY)] | None
    ) = None
    impression_id: str | None = Field(default=None, pattern=_IMPRESSION_ID)

    @model_validator(mode="after")
    def _ids_match_rows(self) -> RankRequest:
        if self.item_ids is None:
            return self
        if len(self.item_ids) != len(self.instances):
            raise InvalidInput(
                f"item_ids: expected one id per instance ({len(self.instances)}), "
                f"got {len(self.item_ids)}",
                field="item_ids",
            )
        seen: set[str] = set()
        for item in self.item_ids:
            if item_key(item) in seen:
                raise InvalidInput(f"item_ids: {item!r} is listed twice", field="item_ids")
            seen.add(item_key(item))
        return self

    @property
    def ids(self) -> list[Any]:
        """The candidates' ids, in row order."""
        return (
            list(self.item_ids) if self.item_ids is not None else list(range(len(self.instances)))
        )


class ClicksRequest(BaseModel):
    """The items clicked in one impression (all of them: a repeat replaces)."""

    model_config = ConfigDict(extra="forbid")
    impression_id: str = Field(pattern=_IMPRESSION_ID)
    clicked: list[ItemId] = Field(max_length=MAX_CANDIDATES)


def check_rank(body: Any) -> RankRequest:
    """A :class:`RankRequest` from a JSON body; InvalidInput naming the bad field."""
    if not isinstance(body, dict):
        raise InvalidInput("body: expected a JSON object", field="body")
    try:
        return RankRequest.model_validate(body)
    except ValidationError as exc:
        raise invalid_input(exc) from None


def check_clicks(body: Any) -> ClicksRequest:
    """A :class:`ClicksRequest` from a JSON body; InvalidInput naming the bad field."""
    if not isinstance(body, dict):
        raise InvalidInput("body: expected a JSON object", field="body")
    try:
        return ClicksRequest.model_validate(body)
    except ValidationError as exc:
        raise invalid_input(exc) from None


@dataclass(frozen=True, slots=True)
class Impression:
    """One interleaved list as stored: what was shown, by which team, and its clicks."""

    id: str
    deployment: str
    created_at_ms: int
    routing_key: str | None
    k: int | None
    candidates: list[Any]
    items: list[Any]
    teams: list[str]
    arms: dict[str, str]
    versions: dict[str, int]
    clicked: list[Any] | None = None
    clicked_at_ms: int | None = None
    winner: str | None = None

    def answer(self) -> dict[str, Any]:
        """The rank route's response for this impression."""
        return {
            "impression_id": self.id,
            "deployment": self.deployment,
            "items": self.items,
            "teams": self.teams,
            "arms": self.arms,
            "versions": self.versions,
        }
