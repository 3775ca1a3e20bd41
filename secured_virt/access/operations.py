"""The operation catalogue: every operation a user can ask secured-virt for.

Each operation has a stable numeric id (ids are what root writes into the PA file, as in the
original proposal, and must never be renumbered), a name (usable in the PA file instead of the
id), a one-line description, whether it only reads or changes state, and whether it acts on a
VM or on the host object.  Host-level operations (policy management, audit reading, host info)
are checked against the host object, which is named ``Domain-0`` by default as in the seed.

Id 1 (``rbac-admin``: changing UA/PA themselves) is deliberately the one operation outside the
seed's ``hostManager`` range 2-63: a host manager runs the host but does not hand out authority.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

READ = "read"
CHANGE = "change"
VM = "vm"
HOST = "host"
#: a storage pool, by name (a realm's images: the vol-* commands)
POOL = "pool"

DEFAULT_HOST_OBJECT = "Domain-0"


@dataclass(frozen=True, slots=True)
class Operation:
    id: int
    name: str
    kind: str  # READ or CHANGE
    scope: str  # VM, HOST or POOL
    description: str

    @property
    def reads_only(self) -> bool:
        return self.kind == READ

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "scope": self.scope,
            "description": self.description,
        }


_R, _C = READ, CHANGE
# (id, name, kind, scope, description) — append only; never renumber.
_TABLE: tuple[tuple[int, str, str, str, str], ...] = (
    (1, "rbac-admin", _C, HOST, "change the UA/PA role policy itself (assign, grant, edit)"),
    (2, "list", _R, VM, "see the VM in list output (its label only with getlabel)"),
    (3, "dominfo", _R, VM, "show basic information about the VM (its label only with getlabel)"),
    (4, "domstate", _R, VM, "show the VM's run state"),
    (5, "dumpxml", _R, VM, "show the VM's configuration as XML (its label only with getlabel)"),
    (6, "start", _C, VM, "start a defined (inactive) VM"),
    (7, "create", _C, VM, "create and start a transient VM from an XML file"),
    (8, "define", _C, VM, "define (register) a persistent VM from an XML file"),
    (9, "undefine", _C, VM, "remove a persistent VM's definition"),
    (10, "shutdown", _C, VM, "ask the guest to shut down gracefully"),
    (11, "reboot", _C, VM, "ask the guest to reboot"),
    (12, "reset", _C, VM, "hard-reset the VM, like pressing the reset button"),
    (13, "destroy", _C, VM, "stop the VM immediately, like pulling the plug"),
    (14, "suspend", _C, VM, "pause the VM's virtual CPUs"),
    (15, "resume", _C, VM, "resume a paused VM"),
    (16, "policy-show", _R, HOST, "show the active sHype/ACM policy, its labels, types and map"),
    (17, "save", _C, VM, "save the VM's state to a file and stop it"),
    (18, "restore", _C, VM, "restore a VM from a saved state file"),
    (19, "console", _C, VM, "connect to the VM's serial console"),
    (20, "setmem", _C, VM, "change the VM's current memory allocation"),
    (21, "setmaxmem", _C, VM, "change the VM's maximum memory"),
    (22, "setvcpus", _C, VM, "change the VM's number of virtual CPUs"),
    (23, "attach-disk", _C, VM, "attach a disk to the VM"),
    (24, "detach-disk", _C, VM, "detach a disk from the VM"),
    (25, "attach-interface", _C, VM, "attach a network interface to the VM"),
    (26, "detach-interface", _C, VM, "detach a network interface from the VM"),
    (27, "migrate", _C, VM, "migrate the VM to another host"),
    (28, "autostart", _C, VM, "set or clear the VM's autostart flag"),
    (29, "snapshot-create", _C, VM, "take a snapshot of the VM"),
    (30, "snapshot-list", _R, VM, "list the VM's snapshots"),
    (31, "snapshot-revert", _C, VM, "revert the VM to a snapshot"),
    (32, "snapshot-delete", _C, VM, "delete one of the VM's snapshots"),
    (33, "getlabel", _R, VM, "show the VM's sHype/ACM label (here, in list, dominfo, dumpxml)"),
    (34, "setlabel", _C, VM, "set the security label of an inactive VM (labels the grant lists)"),
    (35, "relabel", _C, VM, "relabel a running VM (ACM-checked; labels the grant lists)"),
    (36, "resources", _R, HOST, "list labelled resources (disks, networks) and their labels"),
    (37, "setlabel-resource", _C, HOST, "set or remove a resource's label (if the grant lists it)"),
    (
        38,
        "dry-run",
        _R,
        VM,
        "show whether the VM would pass every start check, without starting it",
    ),
    (39, "policy-load", _C, HOST, "install and load a new sHype/ACM policy"),
    (40, "policy-update", _C, HOST, "update the running sHype/ACM policy (all-or-nothing)"),
    (41, "policy-reset", _C, HOST, "reset the sHype/ACM policy to DEFAULT"),
    (42, "policy-rm-boot", _C, HOST, "remove the policy loaded at boot"),
    (43, "policy-edit", _C, HOST, "add or remove policy types, conflict sets and labels"),
    (44, "audit-read", _R, HOST, "read the audit log"),
    (45, "audit-verify", _R, HOST, "verify the audit log's hash chain"),
    (46, "hostinfo", _R, HOST, "show information about the host"),
    (47, "rbac-review", _R, HOST, "review who may do what (check, explain, review)"),
    (48, "domid", _R, VM, "show the VM's id and UUID"),
    (49, "vncdisplay", _R, VM, "show the VM's graphical display address"),
    (50, "screenshot", _R, VM, "take a screenshot of the VM's display"),
    (51, "send-key", _C, VM, "send keystrokes to the VM"),
    (52, "domblklist", _R, VM, "list the VM's block devices"),
    (53, "domiflist", _R, VM, "list the VM's network interfaces"),
    (54, "dommemstat", _R, VM, "show the VM's memory statistics"),
    (55, "domblkstat", _R, VM, "show the VM's block device statistics"),
    (56, "domifstat", _R, VM, "show the VM's network interface statistics"),
    (57, "managedsave", _C, VM, "save the VM's state for the next start"),
    (58, "managedsave-remove", _C, VM, "discard the VM's managed save image"),
    (59, "dump", _C, VM, "write a core dump of the VM"),
    (60, "inject-nmi", _C, VM, "inject a non-maskable interrupt into the guest"),
    (61, "desc", _C, VM, "change the VM's title or description"),
    (62, "daemon-admin", _C, HOST, "reload or inspect the svirtd daemon"),
    (63, "vcpupin", _C, VM, "pin the VM's virtual CPUs to host CPUs"),
    (
        64,
        "realm-admin",
        _C,
        HOST,
        "manage a realm: members, realm roles, grants, assignments (root, or the realm's "
        "admins within their realm)",
    ),
    (65, "vol-list", _R, POOL, "list the volumes (disk images) of a storage pool"),
    (66, "vol-info", _R, POOL, "show a storage volume's type, capacity and allocation"),
    (67, "vol-create-as", _C, POOL, "create a storage volume in a pool (within its realm's quota)"),
    (68, "vol-delete", _C, POOL, "delete a storage volume from a pool"),
    (69, "save-list", _R, VM, "list your own save images (those of VMs you may save-list)"),
    (70, "save-delete", _C, VM, "delete one of your own save images (of a VM you may save-delete)"),
)


class Catalogue:
    """Lookup by id or name; immutable once built."""

    def __init__(self, operations: tuple[Operation, ...]):
        by_id: dict[int, Operation] = {}
        by_name: dict[str, Operation] = {}
        for op in operations:
            if op.id in by_id or op.name in by_name:
                raise ValueError(f"duplicate operation {op.id} {op.name}")
            by_id[op.id] = op
            by_name[op.name] = op
        self.by_id = MappingProxyType(by_id)
        self.by_name = MappingProxyType(by_name)
        #: id -> name, the shape rbac.load() takes (rbac knows nothing else about operations)
        self.names = MappingProxyType({i: o.name for i, o in by_id.items()})

    def __iter__(self):
        return iter(sorted(self.by_id.values(), key=lambda o: o.id))

    def __len__(self) -> int:
        return len(self.by_id)

    def get(self, token: int | str) -> Operation:
        """Resolve an id (int or digit string) or a name; KeyError with a helpful text."""
        if isinstance(token, int) or (
            isinstance(token, str) and token.isascii() and token.isdigit()
        ):
            op = self.by_id.get(int(token))
        else:
            op = self.by_name.get(token)
        if op is None:
            raise KeyError(
                f"unknown operation {token!r} (see `svirt-admin operations` for the catalogue)"
            )
        return op


def render_catalogue(catalogue: Catalogue, *, as_json: bool = False, header: bool = False) -> str:
    """The catalogue as svirsh/svirt-admin print it: a table (optionally headed) or JSON."""
    if as_json:
        import json

        return json.dumps([o.as_dict() for o in catalogue], indent=2) + "\n"
    lines = [f"{'ID':>3}  {'NAME':<20} {'KIND':<6} {'ON':<4}  DESCRIPTION"] if header else []
    lines += [
        f"{o.id:>3}  {o.name:<20} {o.kind:<6} {o.scope:<4}  {o.description}" for o in catalogue
    ]
    return "\n".join(lines) + "\n"


CATALOGUE = Catalogue(tuple(Operation(*row) for row in _TABLE))
