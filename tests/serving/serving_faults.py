"""Python-function models that misbehave on purpose (they store themselves, no pickle).

They live in an importable module because the registry loads a model class by
``module:QualName``. :data:`SWITCH` lets a test make :class:`Switchable` fail or recover.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

SWITCH = {"fail": False}


class _StoresItself:
    def save(self, directory: Path) -> None:
        (directory / "params.txt").write_text(repr(vars(self)))

    @classmethod
    def load(cls, directory: Path) -> Any:
        return cls()


class Raising(_StoresItself):
    """Every prediction raises ``RuntimeError``."""

    def predict(self, X: Any) -> Any:
        raise RuntimeError("model exploded on purpose")


class Switchable(_StoresItself):
    """Predicts the row sums, or raises ``ValueError`` while ``SWITCH["fail"]`` is true."""

    def predict(self, X: Any) -> Any:
        if SWITCH["fail"]:
            raise ValueError("switched to failing")
        return np.asarray(X, dtype=float).sum(axis=1)


class Slow(_StoresItself):
    """Sleeps 5 s before answering zeros (for the timeout)."""

    def predict(self, X: Any) -> Any:
        time.sleep(5.0)
        return np.zeros(len(X))


#: Names of the threads :class:`Sleepy` ran on (the bulkhead test checks its partition).
SLEEPY_THREADS: list[str] = []


class Sleepy(_StoresItself):
    """Sleeps 1 s per call, then answers zeros (a slow challenger); records its thread."""

    def predict(self, X: Any) -> Any:
        SLEEPY_THREADS.append(threading.current_thread().name)
        time.sleep(1.0)
        return np.zeros(len(X))


class BrokenOnLoad(_StoresItself):
    """Saves fine; loading raises as a corrupt model file would."""

    def predict(self, X: Any) -> Any:
        return np.zeros(len(X))

    @classmethod
    def load(cls, directory: Path) -> Any:
        raise OSError(f"corrupt model file in {directory.name}")


class Miscounting(_StoresItself):
    """Returns one prediction fewer than it was given rows (none for one row)."""

    def predict(self, X: Any) -> Any:
        return np.asarray(X, dtype=float).sum(axis=1)[:-1]


class Overcounting(_StoresItself):
    """Returns one prediction more than it was given rows."""

    def predict(self, X: Any) -> Any:
        return np.append(np.asarray(X, dtype=float).sum(axis=1), 0.0)


class Labelling(_StoresItself):
    """Returns a string label per row (a signature may declare a numeric output)."""

    def predict(self, X: Any) -> Any:
        return np.array(["yes"] * len(X), dtype=object)
