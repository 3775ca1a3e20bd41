"""Expiry dates on role assignments.

An assignment may carry ``expires="..."`` in ISO 8601.  A date-time must say its time zone
(``Z`` or ``+02:00``): a policy that means different instants on different hosts is a bug
waiting to happen.  A bare date (``2027-01-31``) means "through the end of that day, UTC", which
is what people mean when they write a last day.  Internally an expiry is a POSIX timestamp: the
assignment is in force while ``now < expires``.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

_DATE_LEN = len("2027-01-31")


class ExpiryFormatError(ValueError):
    """The text is not an ISO 8601 date or zoned date-time."""


def _show(text: str) -> str:
    """The offending text for a message, cut short: a megabyte of junk is not echoed back."""
    return repr(text if len(text) <= 40 else text[:40] + "...")


def parse_expiry(text: str) -> float:
    """ISO 8601 date or zoned date-time -> POSIX timestamp of the first instant it is over."""
    s = text.strip()
    if len(s) == _DATE_LEN and s[4:5] == "-" and s[7:8] == "-":
        try:
            day = date.fromisoformat(s)
        except ValueError:
            raise ExpiryFormatError(
                f"expiry {_show(text)} is not a valid date (YYYY-MM-DD)"
            ) from None
        return _timestamp(
            text, datetime(day.year, day.month, day.day, tzinfo=UTC), timedelta(days=1)
        )
    try:
        when = datetime.fromisoformat(s)
    except ValueError:
        raise ExpiryFormatError(
            f"expiry {_show(text)} is not an ISO 8601 date (2027-01-31) or date-time with a time "
            f"zone (2027-01-31T00:00:00Z)"
        ) from None
    if "T" not in s and " " not in s:
        raise ExpiryFormatError(f"expiry {_show(text)} is not a valid date (YYYY-MM-DD)")
    if when.tzinfo is None:
        raise ExpiryFormatError(
            f"expiry {_show(text)} has no time zone; "
            f"add Z for UTC (e.g. {s}Z) or an offset like +02:00"
        )
    return _timestamp(text, when, timedelta(0))


def _timestamp(text: str, when: datetime, plus: timedelta) -> float:
    """``when + plus`` as a POSIX timestamp; the last representable day (9999-12-31) has no
    "next day", so an expiry that far out is refused rather than crashing a check later."""
    try:
        ts = (when + plus).timestamp()
        datetime.fromtimestamp(ts, UTC)  # and back: explanations print it in UTC
        return ts
    except (OverflowError, ValueError, OSError):
        raise ExpiryFormatError(
            f"expiry {_show(text)} is too far in the future; leave 'expires' out for no expiry"
        ) from None


def to_timestamp(now: datetime | float | int | None) -> float:
    """``now`` as accepted by decide(): None (the clock), a POSIX timestamp, or a datetime
    (a naive datetime is taken as UTC)."""
    if now is None:
        return time.time()
    if isinstance(now, datetime):
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        return now.timestamp()
    if isinstance(now, date):
        return datetime(now.year, now.month, now.day, tzinfo=UTC).timestamp()
    return float(now)


def iso(ts: float) -> str:
    """A timestamp as 'YYYY-MM-DDTHH:MM:SSZ' for explanations and JSON."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
