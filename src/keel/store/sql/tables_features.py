"""Tables of the feature store (entities, feature views, feature services, online rows).

Imported by :mod:`keel.store.sql.tables` so that ``Base.metadata`` holds them;
created by migration 0002.
"""

from __future__ import annotations

from keel.store.sql.tables import Base  # noqa: F401  (tables declare on Base)
