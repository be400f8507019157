"""A direct-address bucket index over sorted search values (``np.searchsorted`` in a few passes)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from keel.features._asof_keys import Ints

#: and a needle steps back at most ``_STEPS - 1`` rows before binary search takes over.
_BUCKETS_PER_ROW = 1
_STEPS = 3


@dataclass(frozen=True)
class _Buckets:
    """A direct-address index over sorted search values: ``np.searchsorted`` in a few passes.

    Values split into ``2**shift``-wide buckets from ``low``; ``ends[b + 1]`` is
    the position of the last value in bucket ``b`` or a lower one (``ends[0] =
    0``: the sentinel). A needle starts at the end of its bucket and steps back
    over the values of its bucket above it: with about one value per bucket
    that takes a step or two, where a binary search takes twenty dependent,
    mispredicted probes. Needles still above after ``_STEPS`` reads (crowded
    buckets) fall back to the binary search, so skewed values cost time, never
    correctness.
    """

    low: int
    high: int
    shift: int
    ends: Ints

    @classmethod
    def build(cls, search: Ints, scratch: Ints) -> _Buckets:
        """The index of ``search`` (a sentinel, then at least one non-decreasing value).

        ``scratch`` (as long as the values, overwritten) saves allocating a temporary.
        """
        values = search[1:]
        low, high = int(values[0]), int(values[-1])
        shift = ((high - low) // (len(values) * _BUCKETS_PER_ROW)).bit_length()
        count = ((high - low) >> shift) + 1
        # Bucket + 1 (measured from one bucket below ``low``): slot 0 stays empty, and
        # the running count of the counts is ``ends`` in place.
        buckets = np.subtract(values, low - (1 << shift), out=scratch)
        buckets >>= shift
        ends = np.bincount(buckets, minlength=count + 1).astype(np.int64, copy=False)
        return cls(low, high, shift, np.cumsum(ends, out=ends))

    @property
    def nbytes(self) -> int:
        """Memory held by the index."""
        return int(self.ends.nbytes)

    def floor(self, search: Ints, needles: Ints) -> tuple[Ints, Ints]:
        """For each needle, the last position in ``search`` whose value is ``<=`` it, and
        that value (position 0, the sentinel, when no row's is)."""
        # Bucket + 1, as in ``build``: below ``low`` → ends[0] = 0; above ``high`` → the last.
        values = np.clip(needles, self.low - (1 << self.shift), self.high)
        values -= self.low - (1 << self.shift)
        values >>= self.shift
        found = np.take(self.ends, values)
        for step in range(_STEPS):
            above = np.take(search, found, out=values) > needles
            if step < _STEPS - 1:
                found -= above
        crowded = np.flatnonzero(above)
        if len(crowded):
            found[crowded] = np.searchsorted(search, needles[crowded], side="right") - 1
            values[crowded] = search[found[crowded]]
        return found, values
