"""The operation ids are a file format: PA files written today name them, so they never move.

Adding an operation appends a new id; renaming one or changing what it reads or changes is a
policy change for every host and must be deliberate — this table makes it a visible diff.
"""

from __future__ import annotations

from secured_virt.access.operations import CATALOGUE

# id: (name, reads or changes, checked against a VM or the host object)
PINNED = {
    1: ("rbac-admin", "change", "host"),
    2: ("list", "read", "vm"),
    3: ("dominfo", "read", "vm"),
    4: ("domstate", "read", "vm"),
    5: ("dumpxml", "read", "vm"),
    6: ("start", "change", "vm"),
    7: ("create", "change", "vm"),
    8: ("define", "change", "vm"),
    9: ("undefine", "change", "vm"),
    10: ("shutdown", "change", "vm"),
    11: ("reboot", "change", "vm"),
    12: ("reset", "change", "vm"),
    13: ("destroy", "change", "vm"),
    14: ("suspend", "change", "vm"),
    15: ("resume", "change", "vm"),
    16: ("policy-show", "read", "host"),
    17: ("save", "change", "vm"),
    18: ("restore", "change", "vm"),
    19: ("console", "change", "vm"),
    20: ("setmem", "change", "vm"),
    21: ("setmaxmem", "change", "vm"),
    22: ("setvcpus", "change", "vm"),
    23: ("attach-disk", "change", "vm"),
    24: ("detach-disk", "change", "vm"),
    25: ("attach-interface", "change", "vm"),
    26: ("detach-interface", "change", "vm"),
    27: ("migrate", "change", "vm"),
    28: ("autostart", "change", "vm"),
    29: ("snapshot-create", "change", "vm"),
    30: ("snapshot-list", "read", "vm"),
    31: ("snapshot-revert", "change", "vm"),
    32: ("snapshot-delete", "change", "vm"),
    33: ("getlabel", "read", "vm"),
    34: ("setlabel", "change", "vm"),
    35: ("relabel", "change", "vm"),
    36: ("resources", "read", "host"),
    37: ("setlabel-resource", "change", "host"),
    38: ("dry-run", "read", "vm"),
    39: ("policy-load", "change", "host"),
    40: ("policy-update", "change", "host"),
    41: ("policy-reset", "change", "host"),
    42: ("policy-rm-boot", "change", "host"),
    43: ("policy-edit", "change", "host"),
    44: ("audit-read", "read", "host"),
    45: ("audit-verify", "read", "host"),
    46: ("hostinfo", "read", "host"),
    47: ("rbac-review", "read", "host"),
    48: ("domid", "read", "vm"),
    49: ("vncdisplay", "read", "vm"),
    50: ("screenshot", "read", "vm"),
    51: ("send-key", "change", "vm"),
    52: ("domblklist", "read", "vm"),
    53: ("domiflist", "read", "vm"),
    54: ("dommemstat", "read", "vm"),
    55: ("domblkstat", "read", "vm"),
    56: ("domifstat", "read", "vm"),
    57: ("managedsave", "change", "vm"),
    58: ("managedsave-remove", "change", "vm"),
    59: ("dump", "change", "vm"),
    60: ("inject-nmi", "change", "vm"),
    61: ("desc", "change", "vm"),
    62: ("daemon-admin", "change", "host"),
    63: ("vcpupin", "change", "vm"),
    64: ("realm-admin", "change", "host"),
    # each realm's storage (issue 15): the object is a storage pool
    65: ("vol-list", "read", "pool"),
    66: ("vol-info", "read", "pool"),
    67: ("vol-create-as", "change", "pool"),
    68: ("vol-delete", "change", "pool"),
    69: ("save-list", "read", "vm"),
    70: ("save-delete", "change", "vm"),
}


def test_ids_names_kinds_and_scopes_never_move():
    assert {o.id: (o.name, o.kind, o.scope) for o in CATALOGUE} == PINNED


def test_the_seed_range_is_complete_and_every_operation_says_what_it_does():
    assert set(range(1, 64)) <= {o.id for o in CATALOGUE}
    for o in CATALOGUE:
        assert o.description and o.description == o.description.strip()
        assert (
            CATALOGUE.get(o.id) is o
            and CATALOGUE.get(o.name) is o
            and CATALOGUE.get(str(o.id)) is o
        )
