"""The command-line front-ends: ``svirsh`` (guest admins) and ``svirt-admin`` (root, and
delegated role, policy and audit managers).

Owns argument parsing, help, rendering replies as virsh-like text, and choosing the way in:
one request to svirtd over its socket (``secured_virt.client``), or — for root and sudo — the
same ``Service`` in-process (``direct``).  Decides nothing itself: every decision is the
service's and the gate's.  May import every room below it; nothing imports it.
"""
