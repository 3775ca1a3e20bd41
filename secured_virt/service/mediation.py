"""The mediation table: every operation, and the checks it must pass before it runs.

Why a table: what an *allowed* request may reach used to be decided command by command, and
each command that forgot a check (attach without the ACM, snapshot-revert without the current
label, define without the label bound to the UUID) was a hole.  Here each operation of the
catalogue has one row naming its steps; ``Service._gated`` reads the row and performs the steps
it owns, and refuses to run an operation whose row is missing, or whose command did not claim
the steps only the command can perform.  ``tests/confinement/test_mediation_table.py`` walks the
catalogue and fails for an operation that changes what a VM can reach without its row, and
``docs/mediation.md`` is generated from this module (``python -m
secured_virt.service.mediation``), so the documentation cannot drift from the code.

Reach, per row:

* ``widens`` — the operation can make a VM reach something it could not reach before (a host
  file, another tenant's data, a running competitor): it needs the sHype/ACM steps under the
  host-wide lock, and the fence and allow-list for callers other than root;
* ``none`` — it reads, narrows, or changes only the amount of what the VM already has;
* ``outside`` — it widens, but the widening happens later outside secured-virt's gate; listed
  so the gap is written down, not forgotten.  No operation is outside today: ``autostart``
  was (libvirt's flag starts a domain at host boot, unchecked) until it became a wish that
  svirtd carries out at boot through the gate (service.autostart).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from secured_virt.access.operations import CATALOGUE

# -- the steps -----------------------------------------------------------------------------
REALM = "realm"
REALM_RESOURCES = "realm_resources"
RBAC = "rbac"
PIN = "pin"
ACM_LOCK = "acm_lock"
ACM_VM = "acm_vm"
ACM_RESOURCES = "acm_resources"
DISK_FENCE = "disk_fence"
DEVICE_ALLOWLIST = "device_allowlist"
LABEL_CURRENT = "label_current"
OWNERSHIP = "ownership"
ACM_LABEL = "acm_label"
ACM_POLICY = "acm_policy"
ACM_DESTINATION = "acm_destination"
DESTINATION_LISTED = "destination_listed"
SAVE_PATH = "save_path"
SVIRT_CATEGORIES = "svirt_categories"
REALM_QUOTA = "realm_quota"
VOLUME_QUOTA = "volume_quota"

FACADE = "service façade"
COMMAND = "command"


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    by: str  # FACADE (Service._gated performs it) or COMMAND (the command claims it)
    when: str  # when it applies
    what: str


#: every step, in the order it happens
STEPS: MappingProxyType[str, Step] = MappingProxyType(
    {
        s.name: s
        for s in (
            Step(
                REALM,
                FACADE,
                "realms configured",
                "before RBAC: the caller is a member of the VM's realm (a user in no realm acts "
                "only on VMs of no realm; root in every realm), the operation is one root "
                "allows that realm (host operations: only those listed for it), and a label the "
                "request gives is one of the VM's realm's (secured_virt.tenancy.check); no "
                "grant, however wrong, reaches across",
            ),
            Step(
                RBAC,
                FACADE,
                "always",
                "UA/PA decision on the target (with dynamic separation of duty, and PAM when "
                "the role or the configuration asks for it); audited before anything runs",
            ),
            Step(
                ACM_LOCK,
                FACADE,
                "sHype/ACM on",
                "the host-wide ACM lock, taken only *after* authentication (a password prompt "
                "never holds it); RBAC is checked again under it, then the ACM steps and the "
                "action run with nobody else instantiating or relabelling",
            ),
            Step(
                PIN,
                FACADE,
                "the VM exists",
                "the action acts on the VM with the UUID the decision saw, never on whatever "
                "bears its name by then",
            ),
            Step(
                ACM_VM,
                FACADE,
                "sHype/ACM on",
                "the VM's *current* label against the domains that run now (Chinese Wall) and "
                "every resource of the definition that will run (STE), read from the live "
                "state, the save image or the snapshot, not from the inactive XML",
            ),
            Step(
                ACM_RESOURCES,
                FACADE,
                "sHype/ACM on",
                "every resource the request adds (disk, labelled interface) shares an STE type "
                "with the VM's current label, live attach or not",
            ),
            Step(
                ACM_LABEL,
                COMMAND,
                "sHype/ACM on",
                "the label change itself is mediated by the sHype/ACM host (Chinese Wall and "
                "STE replayed over what runs) under the lock",
            ),
            Step(
                ACM_POLICY,
                COMMAND,
                "sHype/ACM on",
                "a policy change is replayed over the running domains under the lock, all or "
                "nothing",
            ),
            Step(
                ACM_DESTINATION,
                COMMAND,
                "sHype/ACM on",
                "the destination host's ACM policy and running domains admit the VM",
            ),
            Step(
                REALM_RESOURCES,
                FACADE,
                "realms configured",
                "every disk image the definition or device names is in the storage of the VM's "
                "realm, and an image in a realm's storage is used by that realm's VMs only, "
                "root's requests included",
            ),
            Step(
                DISK_FENCE,
                FACADE,
                "caller is not plain root",
                "disk images inside disk_dirs, their headers (backing chain, data file) read "
                "again now: an image a user can write is untrusted at every start, restore, "
                "revert and attach",
            ),
            Step(
                DEVICE_ALLOWLIST,
                FACADE,
                "caller is not plain root",
                "every device's host side is one a user may choose (the same allow-list as define)",
            ),
            Step(
                OWNERSHIP,
                COMMAND,
                "always",
                "owner and label stay bound to the VM's UUID: never taken from the request; "
                "a label survives undefine and comes back with a define of the same UUID",
            ),
            Step(
                LABEL_CURRENT,
                FACADE,
                "always",
                "the VM keeps the label (and owner) it has now: one stored in a save image or "
                "snapshot is overwritten with the current one before anyone else is checked",
            ),
            Step(
                DESTINATION_LISTED,
                COMMAND,
                "caller is not plain root",
                "only a destination root listed (acm_peers)",
            ),
            Step(
                SVIRT_CATEGORIES,
                FACADE,
                "sVirt on (svirt = yes, the default)",
                "the running VM gets a category pair (c_i, c_j) no other running VM holds, "
                "allocated under the host-wide categories lock and written to its live "
                "metadata; it is free again once the VM stops (secured_virt.shype.categories)",
            ),
            Step(
                REALM_QUOTA,
                FACADE,
                "realms configured",
                "the VM's realm keeps within root's <Quota>: a new VM within its number of VMs, "
                "a definition within its vCPUs and memory, a VM that will run within the vCPUs "
                "and memory its running VMs may hold at once (each at its maximum); checked "
                "right before the action under one host-wide lock (svirtd and root's direct svirsh "
                "alike), so two requests cannot both take the "
                "last share; a refusal names the limit and the current use (exit 3, audited; "
                "secured_virt.tenancy.quotas), root's requests included. A change of amount "
                "(setvcpus, setmem, setmaxmem) that raises what the VM may hold passes the same "
                "checks: the definition it leaves within the limits alone, a raise of the "
                "running instance beside the realm's other running VMs",
            ),
            Step(
                VOLUME_QUOTA,
                COMMAND,
                "realms configured",
                "a new volume keeps the capacity of the volumes in its realm's pool within the "
                "realm's <Quota bytes>, checked and created under the quota lock; the name is "
                "one directory entry (never a path)",
            ),
            Step(
                SAVE_PATH,
                COMMAND,
                "caller is not plain root",
                "the save file is inside the caller's own save directory, opened safely",
            ),
        )
    }
)

FACADE_STEPS = frozenset(n for n, s in STEPS.items() if s.by == FACADE)
COMMAND_STEPS = frozenset(n for n, s in STEPS.items() if s.by == COMMAND)
ACM_STEPS = frozenset({ACM_LOCK, ACM_VM, ACM_RESOURCES, ACM_LABEL, ACM_POLICY, ACM_DESTINATION})
#: the steps that need a description of what the request would make the VM reach (an Effect)
EFFECT_STEPS = frozenset({ACM_VM, ACM_RESOURCES, DISK_FENCE, DEVICE_ALLOWLIST, LABEL_CURRENT})

WIDENS, NONE, OUTSIDE = "widens", "none", "outside"


@dataclass(frozen=True, slots=True)
class Row:
    op: str
    reach: str  # WIDENS, NONE or OUTSIDE
    steps: tuple[str, ...]
    why: str

    @property
    def facade_steps(self) -> frozenset[str]:
        return frozenset(self.steps) & FACADE_STEPS

    @property
    def command_steps(self) -> frozenset[str]:
        return frozenset(self.steps) & COMMAND_STEPS


_VM_READ = (RBAC, PIN)
_VM_PLAIN = (RBAC, PIN)
_HOST = (RBAC,)
_N, _W, _O = NONE, WIDENS, OUTSIDE
_AMOUNT = "an amount of what the VM has; a raise stays within its realm's quota"

# op name -> (reach, steps, why)
_ROWS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "rbac-admin": (_N, _HOST, "changes who may ask, not what a VM reaches"),
    "list": (_N, (RBAC,), "reads; filtered per VM by the caller's roles"),
    "dominfo": (_N, _VM_READ, "reads"),
    "domstate": (_N, _VM_READ, "reads"),
    "dumpxml": (_N, _VM_READ, "reads"),
    "start": (
        _W,
        (RBAC, ACM_LOCK, PIN, ACM_VM, DISK_FENCE, SVIRT_CATEGORIES, REALM_QUOTA),
        "brings the domain into existence beside the others, with its disks",
    ),
    "create": (
        _W,
        (
            RBAC,
            ACM_LOCK,
            ACM_VM,
            DISK_FENCE,
            DEVICE_ALLOWLIST,
            OWNERSHIP,
            SVIRT_CATEGORIES,
            REALM_QUOTA,
        ),
        "a new running domain from the caller's XML",
    ),
    "define": (
        _W,
        (RBAC, ACM_LOCK, ACM_RESOURCES, DISK_FENCE, DEVICE_ALLOWLIST, OWNERSHIP, REALM_QUOTA),
        "a definition that will run; its devices and label are what the next start uses",
    ),
    "undefine": (
        _N,
        (RBAC, PIN, OWNERSHIP),
        "removes the definition; the label stays recorded for the UUID",
    ),
    "shutdown": (_N, _VM_PLAIN, "stops the guest"),
    "reboot": (_N, _VM_PLAIN, "same definition, same label"),
    "reset": (_N, _VM_PLAIN, "same definition, same label"),
    "destroy": (_N, _VM_PLAIN, "stops the guest"),
    "suspend": (_N, _VM_PLAIN, "pauses the guest"),
    "resume": (_N, _VM_PLAIN, "the paused guest was admitted when it started"),
    "policy-show": (_N, _HOST, "reads"),
    "save": (_N, (RBAC, PIN, SAVE_PATH), "stops the guest into a file the caller may use"),
    "restore": (
        _W,
        (
            RBAC,
            ACM_LOCK,
            PIN,
            ACM_VM,
            DISK_FENCE,
            DEVICE_ALLOWLIST,
            LABEL_CURRENT,
            SAVE_PATH,
            SVIRT_CATEGORIES,
            REALM_QUOTA,
        ),
        "brings a domain back from a file whose contents may be old or the caller's own",
    ),
    "console": (_N, _VM_PLAIN, "the caller reaches the guest's serial line, the VM nothing new"),
    "setmem": (_N, (*_VM_PLAIN, REALM_QUOTA), _AMOUNT),
    "setmaxmem": (_N, (*_VM_PLAIN, REALM_QUOTA), _AMOUNT),
    "setvcpus": (_N, (*_VM_PLAIN, REALM_QUOTA), _AMOUNT),
    "attach-disk": (
        _W,
        (RBAC, ACM_LOCK, PIN, ACM_RESOURCES, DISK_FENCE, DEVICE_ALLOWLIST),
        "a host file or device becomes the guest's, live or at the next start",
    ),
    "detach-disk": (_N, _VM_PLAIN, "narrows"),
    "attach-interface": (
        _W,
        (RBAC, ACM_LOCK, PIN, ACM_RESOURCES, DEVICE_ALLOWLIST),
        "a network becomes the guest's, live or at the next start",
    ),
    "detach-interface": (_N, _VM_PLAIN, "narrows"),
    "migrate": (
        _W,
        (RBAC, ACM_LOCK, PIN, REALM_RESOURCES, ACM_DESTINATION, DESTINATION_LISTED),
        "the domain runs on another host, beside what runs there (with the images it has, "
        "which must be its realm's)",
    ),
    "autostart": (
        _N,
        _VM_PLAIN,
        "records a wish: at host boot svirtd starts the VM as the user who marked it, through "
        "this table's start row (service.autostart); libvirt's own flag is never set",
    ),
    "snapshot-create": (_N, _VM_PLAIN, "records the current state"),
    "snapshot-list": (_N, _VM_READ, "reads"),
    "snapshot-revert": (
        _W,
        (RBAC, ACM_LOCK, PIN, ACM_VM, DISK_FENCE, LABEL_CURRENT, SVIRT_CATEGORIES, REALM_QUOTA),
        "the domain takes an older definition (and may start running)",
    ),
    "snapshot-delete": (_N, _VM_PLAIN, "narrows"),
    "getlabel": (_N, _VM_READ, "reads"),
    "setlabel": (
        _W,
        (RBAC, ACM_LOCK, PIN, ACM_LABEL),
        "a label grants the STE types of its resources",
    ),
    "relabel": (
        _W,
        (RBAC, ACM_LOCK, PIN, ACM_LABEL),
        "a running domain's types change beside what runs",
    ),
    "resources": (_N, _HOST, "reads"),
    "setlabel-resource": (
        _W,
        (RBAC, ACM_LOCK, ACM_LABEL),
        "a resource's label decides which domains may use it",
    ),
    "dry-run": (_N, (RBAC, ACM_LOCK, PIN), "reads the mediation state"),
    "policy-load": (_W, (RBAC, ACM_LOCK, ACM_POLICY), "new conflict sets and types"),
    "policy-update": (_W, (RBAC, ACM_LOCK, ACM_POLICY), "changed conflict sets and types"),
    "policy-reset": (_W, (RBAC, ACM_LOCK, ACM_POLICY), "back to the DEFAULT policy"),
    "policy-rm-boot": (_N, _HOST, "changes only what loads at the next boot"),
    "policy-edit": (_W, (RBAC, ACM_LOCK, ACM_POLICY), "changed conflict sets and types"),
    "audit-read": (_N, _HOST, "reads"),
    "audit-verify": (_N, _HOST, "reads"),
    "hostinfo": (_N, _HOST, "reads"),
    "rbac-review": (_N, _HOST, "reads"),
    "domid": (_N, _VM_READ, "reads"),
    "vncdisplay": (_N, _VM_READ, "reads"),
    "screenshot": (_N, _VM_READ, "reads"),
    "send-key": (_N, _VM_PLAIN, "the caller reaches the guest, the VM nothing new"),
    "domblklist": (_N, _VM_READ, "reads"),
    "domiflist": (_N, _VM_READ, "reads"),
    "dommemstat": (_N, _VM_READ, "reads"),
    "domblkstat": (_N, _VM_READ, "reads"),
    "domifstat": (_N, _VM_READ, "reads"),
    "managedsave": (_N, _VM_PLAIN, "libvirt keeps the state in its own directory"),
    "managedsave-remove": (_N, _VM_PLAIN, "narrows"),
    "dump": (
        _N,
        (RBAC, PIN, SAVE_PATH),
        "the guest's memory goes into a file the caller may use (their save directory)",
    ),
    "inject-nmi": (_N, _VM_PLAIN, "the caller reaches the guest, the VM nothing new"),
    "desc": (_N, _VM_PLAIN, "text only"),
    "daemon-admin": (
        _W,
        (RBAC, ACM_POLICY),
        "reload makes svirtd enforce a policy loaded elsewhere; a broken one keeps the last good",
    ),
    "vcpupin": (_N, _VM_PLAIN, "scheduling of what the VM has"),
    "save-list": (_N, (RBAC,), "reads the caller's own save directory, filtered per image's VM"),
    "save-delete": (
        _N,
        (RBAC, SAVE_PATH),
        "removes a file from the caller's own save directory, opened safely",
    ),
    "realm-admin": (
        _N,
        _HOST,
        "changes who may ask inside one realm; a realm admin's change is refused if it names "
        "anyone or anything outside the realm (secured_virt.service.realms)",
    ),
    "vol-list": (_N, _HOST, "reads one pool (the realm step: the caller's realm's pool only)"),
    "vol-info": (_N, _HOST, "reads one volume of one pool (the caller's realm's)"),
    "vol-create-as": (
        _N,
        (RBAC, VOLUME_QUOTA),
        "a new image in the caller's realm's pool; no VM reaches it until a define or attach "
        "passes realm_resources and the fence",
    ),
    "vol-delete": (
        _N,
        _HOST,
        "removes an image of the caller's realm's pool (a running guest keeps its open file)",
    ),
}


def _realm_steps(steps: tuple[str, ...]) -> tuple[str, ...]:
    """Every row starts with the realm step; a row that names disk images (the fence's rows)
    also checks their realm, right before the fence."""
    out = [REALM]
    for s in steps:
        if s == DISK_FENCE:
            out.append(REALM_RESOURCES)
        out.append(s)
    return tuple(out)


TABLE: MappingProxyType[str, Row] = MappingProxyType(
    {op: Row(op, reach, _realm_steps(steps), why) for op, (reach, steps, why) in _ROWS.items()}
)


class Unmediated(Exception):
    """An operation has no row, or its command did not claim the steps only it can do."""


def row(op_name: str) -> Row:
    r = TABLE.get(op_name)
    if r is None:
        raise Unmediated(
            f"operation '{op_name}' has no row in the mediation table "
            "(secured_virt/service/mediation.py), so nothing says what it must pass; refusing"
        )
    return r


def check_claims(r: Row, performs, *, has_acm_check: bool) -> None:
    """The command must claim exactly the command steps of its row: a step it forgot (or one
    the table does not know it does) stops the request before anything runs."""
    claimed = frozenset(performs)
    unknown = claimed - COMMAND_STEPS
    if unknown:
        raise Unmediated(f"'{r.op}' claims steps that are not command steps: {sorted(unknown)}")
    missing, extra = r.command_steps - claimed, claimed - r.command_steps
    if missing or extra:
        raise Unmediated(
            f"operation '{r.op}': its command performs {sorted(claimed) or 'no steps'} but the "
            f"mediation table asks for {sorted(r.command_steps) or 'none'}; refusing"
        )
    if has_acm_check and not (r.command_steps & ACM_STEPS):
        raise Unmediated(f"'{r.op}' brings an ACM check its row does not declare; refusing")


@dataclass(frozen=True, slots=True)
class Effect:
    """What a request would make a VM reach, for the steps that inspect it.

    ``domain_xml``: the whole definition that will run or be kept (the config to start, the
    caller's prepared XML, the save image's, the snapshot's).  ``device``: one device element
    (XML text) added to an existing VM.  ``meta``: the owner and label the VM will have
    (vmmeta.VmMeta; None: the VM's current ones).  ``instantiates``: the domain will run
    afterwards (a revert to a shut-off snapshot does not).  ``replaces_running``: the VM runs
    now and this request replaces its running instance (a revert), so the Chinese Wall is
    checked as if it were not running.  ``running``: the VM runs now (an added resource is
    then checked against its label even if it has none: it runs as __UNLABELED__); an
    inactive, unlabelled VM's resources are checked when it starts, under the label it has
    then.  ``resize``: a change of amount (``tenancy.quotas.Resize``: setvcpus, setmem,
    setmaxmem), for the realm's quota; the VM's definitions are read under the quota lock.
    """

    domain_xml: str | None = None
    device: str | None = None
    meta: object | None = None
    instantiates: bool = True
    replaces_running: bool = False
    running: bool = False
    resize: object | None = None


def applicable(
    r: Row, *, acm_on: bool, privileged: bool, exists: bool, svirt_on: bool = False
) -> tuple[str, ...]:
    """The façade steps that apply to this request, in table order."""
    out = []
    for s in r.steps:
        if s not in FACADE_STEPS:
            continue
        if s in ACM_STEPS and not acm_on:
            continue
        if s == SVIRT_CATEGORIES and not svirt_on:
            continue
        if s in (DISK_FENCE, DEVICE_ALLOWLIST) and privileged:
            continue
        if s == PIN and not exists:
            continue
        out.append(s)
    return tuple(out)


# -- the documentation page ----------------------------------------------------------------
def render_markdown() -> str:
    """docs/mediation.md, generated: edit this module, then run
    ``python -m secured_virt.service.mediation > docs/mediation.md``."""
    lines = [
        "# Mediation: what each operation must pass",
        "",
        "<!-- generated by `python -m secured_virt.service.mediation`; do not edit by hand -->",
        "",
        "Every operation of the catalogue (`svirt-admin operations`) has one row in",
        "`secured_virt/service/mediation.py`. The service reads the row for every request:",
        "it performs the steps it owns, refuses an operation without a row, and refuses a",
        "command that does not claim the steps only the command can perform. A test walks",
        "the catalogue and fails for any operation that changes what a VM can reach without",
        "declared mediation, and another checks that this page equals the generated one.",
        "",
        "**Reach**: *widens* — the operation can make a VM reach something new (a host file,",
        "another tenant's data, a running competitor); *none* — it reads, narrows, or changes",
        "only amounts; *outside* — it widens later, outside secured-virt's gate (a gap written",
        "down so it is not forgotten; no operation is outside today). `autostart` only records",
        "a wish: when the host boots, svirtd starts the VM as the user who marked it, through",
        "the `start` row (`secured_virt/service/autostart.py`).",
        "",
        "## Steps",
        "",
        "| step | done by | applies | what |",
        "|---|---|---|---|",
    ]
    for s in STEPS.values():
        lines.append(f"| `{s.name}` | {s.by} | {s.when} | {s.what} |")
    lines += [
        "",
        "## Operations",
        "",
        "| id | operation | reach | steps | why |",
        "|---:|---|---|---|---|",
    ]
    for op in CATALOGUE:
        r = TABLE.get(op.name)
        if r is None:
            lines.append(f"| {op.id} | `{op.name}` | **missing** | | |")
            continue
        steps = ", ".join(f"`{s}`" for s in r.steps)
        lines.append(f"| {op.id} | `{op.name}` | {r.reach} | {steps} | {r.why} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover - the generator of docs/mediation.md
    import sys

    sys.stdout.write(render_markdown())
