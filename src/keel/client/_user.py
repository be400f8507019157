"""Who is using the SDK, as both transports record it when no token says so."""

from __future__ import annotations

import getpass

__all__ = ["local_user"]


def local_user() -> str | None:
    """The operating-system user running this process (None if it has no name, or one that
    cannot travel in an HTTP header: non-ASCII or with control characters).

    The embedded SDK records it as the author of what it changes; the HTTP SDK sends it as
    the ``X-Keel-User`` hint, which a server uses only with ``KEEL_AUTH=off`` (with auth on,
    the token's user is the author), so both record the same name.
    """
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        return None
    return user if user.isascii() and user.isprintable() and user.strip() else None
