"""Sizes printed the way virsh prints them (``vshPrettyCapacity``).

One formatter for the two places that show a size to a person: svirsh's rendering of
vol-info/vol-list (``cli.render``, on the client's start-up path) and a realm quota's refusal
(``tenancy.quotas``), so a volume's size reads the same in a listing and in the refusal that
names it.  A shared top-level module that imports nothing: the client pays nothing for it
but its own few lines, and every room may use it.
"""

from __future__ import annotations

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def pretty(n: int) -> str:
    """virsh's vshPrettyCapacity: ``%.2f`` in the largest binary unit below 1024."""
    value, i = float(n), 0
    while value >= 1024 and i < len(_UNITS) - 1:
        value /= 1024
        i += 1
    return f"{value:.2f} {_UNITS[i]}"
