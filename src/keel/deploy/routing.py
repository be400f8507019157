"""Which arm answers a request: sticky by a stable hash of the routing key, or random per request.

The key is hashed with BLAKE2b (64-bit digest of ``deployment \0 key``) into one of
10,000 buckets (0.01 % granularity), so every process and replica, before and
after a restart, sends a key to the same arm — Python's ``hash()`` is salted
per process and would not. Arms own consecutive bucket ranges, primary first
and the others in policy order; as a canary's share grows from 5 to 25 %, its
range only widens, so a key that was on the canary stays there.

Shadow arms own no buckets: they get copies of every request elsewhere.
"""

from __future__ import annotations

import hashlib
import random
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from keel.errors import InvalidInput

__all__ = ["BUCKETS", "Router", "bucket_of"]

BUCKETS = 10_000


def bucket_of(deployment: str, key: str) -> int:
    """The stable bucket 0..9999 of ``key`` in ``deployment``.

    >>> bucket_of("churn-live", "user-42")
    3076
    """
    digest = hashlib.blake2b(_prefix(deployment) + key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def _prefix(deployment: str) -> bytes:
    # NUL cannot occur in a deployment name, so (name, key) pairs never collide as bytes.
    return deployment.encode() + b"\0"


@dataclass(frozen=True, slots=True)
class Router:
    """Chooses an arm name per request; build it once per policy version, call it per request.

    ``weights`` are percents of live traffic summing to 100 (as
    :class:`~keel.deploy.policy.DeploymentPolicy` guarantees). ``sticky``
    False (policy ``unit: request``) ignores keys and draws uniformly.
    """

    deployment: str
    arms: tuple[str, ...]
    bounds: tuple[int, ...]  # exclusive upper bucket of each arm, ascending, last = BUCKETS
    sticky: bool = True
    shadows: tuple[str, ...] = ()
    # The hash state after the deployment prefix: copying it skips re-hashing the
    # name on every request (~1 us instead of ~1.9 us per call here).
    _base: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        base = hashlib.blake2b(digest_size=8)
        base.update(_prefix(self.deployment))
        object.__setattr__(self, "_base", base)

    @classmethod
    def build(
        cls,
        deployment: str,
        weights: Sequence[tuple[str, float]],
        *,
        sticky: bool = True,
        shadows: Sequence[str] = (),
    ) -> Router:
        """Lay arms out on the bucket ring; zero-weight arms get no buckets."""
        if not weights:
            raise InvalidInput("a router needs at least one arm", field="arms")
        total = sum(weight for _, weight in weights)
        if abs(total - 100) > 1e-6 or any(weight < 0 for _, weight in weights):
            raise InvalidInput(f"arm weights sum to {total:g}, not 100", field="arms")
        names: list[str] = []
        bounds: list[int] = []
        cumulative = 0.0
        for name, weight in weights:
            cumulative += weight
            upper = BUCKETS if cumulative >= 100 - 1e-9 else round(cumulative * BUCKETS / 100)
            if weight > 0 and (not bounds or upper > bounds[-1]):
                names.append(name)
                bounds.append(upper)
        bounds[-1] = BUCKETS
        return cls(deployment, tuple(names), tuple(bounds), sticky, tuple(shadows))

    @classmethod
    def for_policy(cls, policy: object) -> Router:
        """The router of a :class:`~keel.deploy.policy.DeploymentPolicy` at its current weights."""
        from keel.deploy.policy import DeploymentPolicy

        if not isinstance(policy, DeploymentPolicy):
            raise TypeError("expected a DeploymentPolicy")
        ordered = sorted(policy.arms, key=lambda arm: arm.role != "primary")  # stable
        return cls.build(
            policy.name,
            [(str(a.name), float(a.weight or 0)) for a in ordered if a.role != "shadow"],
            sticky=policy.unit == "routing_key",
            shadows=[str(a.name) for a in policy.arms if a.role == "shadow"],
        )

    def choose(self, key: str | None = None, *, draw: Callable[[], float] = random.random) -> str:
        """The arm for a request with routing ``key`` (None, or ``unit: request``: random).

        ``draw`` is the uniform [0, 1) source for unkeyed requests; tests pass a seeded one.
        """
        if key is None or not self.sticky:
            bucket = int(draw() * BUCKETS)
        else:
            hasher = self._base.copy()
            hasher.update(key.encode())
            bucket = int.from_bytes(hasher.digest(), "big") % BUCKETS
        return self.arms[bisect_right(self.bounds, bucket)]
