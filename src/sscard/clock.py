"""The wall clock every timestamp of sscard comes from (events, scans, sessions, credentials).

One function so that every layer stamps the same way (aware, in the machine's local zone, from
UTC) and a test or a future fake clock has one place to look.
"""

from __future__ import annotations

import datetime as dt


def local_now() -> dt.datetime:
    """Now, timezone-aware, in the local zone: what event and session times show."""
    return dt.datetime.now(dt.timezone.utc).astimezone()
