"""``list``'s virsh filters: which domains a ``virsh list`` with the same options would show.

virsh builds its answer from ``virConnectListAllDomains`` filter flags: a flag group (active or
inactive, persistent or transient, autostart or not, snapshot or not, managed save or not, the
state) matches a domain when any flag of the group does, and every group given must match.
The same rule is applied here to the backend's plain ``DomainInfo`` rows, so it works for every
backend; the facts a row does not carry (snapshots, managed save) are asked of the backend only
when an option needs them, and a backend that cannot tell counts as "none".
"""

from __future__ import annotations

#: (option, option) pairs virsh refuses together, in virsh's order of checking.
EXCLUSIVE = (("table", "name"), ("table", "uuid"), ("table", "id"))

_STATE_OPTS = {
    "state_running": "running",
    "state_paused": "paused",
    "state_shutoff": "shut off",
}


def conflict(args: dict) -> str | None:
    """virsh's message for options that cannot go together, or None."""
    for a, b in EXCLUSIVE:
        if args.get(a) and args.get(b):
            return f"Options --{a} and --{b} are mutually exclusive"
    return None


def wants_inactive(args: dict) -> bool:
    """Whether the listing must include inactive domains at all."""
    return bool(args.get("all") or args.get("inactive") or args.get("state_shutoff"))


#: the options by which ``select`` looks at a row's fields beyond its name and id
_ROW_FILTERS = ("persistent", "transient", "autostart", "no_autostart", "state_other", *_STATE_OPTS)


def selects_by_name(args: dict) -> bool:
    """Whether ``select`` needs of each domain only its name and id (which are active), so a
    listing can decide on names and ask the rows afterwards (a streamed ``list``)."""
    return not any(args.get(opt) for opt in _ROW_FILTERS)


def _ask(backend, method: str, name: str) -> bool:
    fn = getattr(backend, method, None)
    return bool(fn(name)) if fn is not None else False


def select(domains: list, args: dict, backend) -> list:
    """The rows of ``domains`` virsh would list for these options."""
    if args.get("all"):
        activity = {True, False}
    elif args.get("inactive") or args.get("state_shutoff"):
        activity = {False}
    else:
        activity = {True}
    groups = []
    if args.get("persistent") or args.get("transient"):
        groups.append(
            lambda d: (
                (args.get("persistent") and d.persistent)
                or (args.get("transient") and not d.persistent)
            )
        )
    if args.get("autostart") or args.get("no_autostart"):
        groups.append(
            lambda d: (
                (args.get("autostart") and d.autostart)
                or (args.get("no_autostart") and not d.autostart)
            )
        )
    if args.get("with_snapshot") or args.get("without_snapshot"):

        def snapshots(d):
            has = _ask(backend, "has_snapshots", d.name)
            return (args.get("with_snapshot") and has) or (args.get("without_snapshot") and not has)

        groups.append(snapshots)
    if args.get("with_managed_save") or args.get("without_managed_save"):

        def managed(d):
            has = _ask(backend, "has_managed_save", d.name)
            return (args.get("with_managed_save") and has) or (
                args.get("without_managed_save") and not has
            )

        groups.append(managed)
    states = {word for opt, word in _STATE_OPTS.items() if args.get(opt)}
    if states or args.get("state_other"):
        groups.append(
            lambda d: (
                d.state in states
                or (args.get("state_other") and d.state not in _STATE_OPTS.values())
            )
        )
    out = [d for d in domains if (d.id is not None) in activity]
    return [d for d in out if all(g(d) for g in groups)]


def mark_saved(row: dict, backend) -> None:
    """``--managed-save``: a shut-off domain with a managed save image shows as "saved"."""
    if row.get("state") == "shut off" and _ask(backend, "has_managed_save", row["name"]):
        row["state"] = "saved"
