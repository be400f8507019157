"""Tables of authentication and audit (users, API tokens, audit log).

Imported by :mod:`keel.store.sql.tables` so that ``Base.metadata`` holds them;
created by migration 0003.
"""

from __future__ import annotations

from keel.store.sql.tables import Base  # noqa: F401  (tables declare on Base)
