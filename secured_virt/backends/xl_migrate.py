"""Labels that travel with ``xl migrate`` (seed 001): what the source sends to the destination.

xl's migration stream is a save image sent down a pipe: xl's header, libxl's JSON config (which
has no room for our owner/label lines: xl_record), then the domain's memory.  A plain
``xl migrate NAME HOST`` runs ``ssh HOST xl migrate-receive`` on the destination, which
creates the domain from the stream without asking anyone; the destination would then learn
the label from whatever config file of that name it has, or not at all.  So the source never
lets xl reach the destination's xl directly: it runs

    xl migrate -s "" -- NAME "exec /usr/bin/ssh -o BatchMode=yes -- HOST 'svirt-xl-receive
        --name=NAME --uuid=UUID --owner=USER --label-policy=POLICY --label=LABEL --disk=...'"

xl(1): with an empty ``-s`` the host operand itself is the transport, run by ``sh -c`` with
the stream on its stdin and xl's acknowledgements read from its stdout (tools/xl/xl_migrate.c:
``if (!ssh_command[0]) rune = host``).  On the destination, root's ssh runs secured-virt's
receiver (cli/xl_receive.py) with the record as arguments: the record reaches the
destination's decision before xl there reads a byte of the stream, and the receiver, once it
admitted the domain, starts the real ``xl migrate-receive`` on the same stdin/stdout, so no
process of ours copies the memory stream.  What travels is names (owner, label name, policy
name, the disks' resource names), never an ssidref: the destination resolves the label under
*its* policy, exactly as a restore does.

Every word is checked before it is quoted (the record as in xl_record, the host by
xl_args.migrate_host, the disks by this module) and quoted twice: once for the remote shell ssh
hands the command to, once for the local ``sh -c`` xl runs.  The receiver's refusal reaches the
source as xl's stderr, one line starting with ``REFUSAL_TAG``.
"""

from __future__ import annotations

import re
import shlex

from . import domxml
from .base import BackendError
from .xl_args import check_name
from .xl_record import check_record

#: the receiver on the destination (packaging/install.sh links it into SBINDIR)
RECEIVER = ("/usr/local/sbin/svirt-xl-receive",)
#: the transport to the destination: root's ssh, never asking for a password (xl runs it
#: without a terminal)
SSH = ("/usr/bin/ssh", "-o", "BatchMode=yes")
#: what the receiver prints (to stderr, which xl passes on) when it refuses the domain
REFUSAL_TAG = "svirt-xl-receive: refused:"
#: xl's name for a domain while it is being received (tools/xl/xl_vmcontrol.c create_domain);
#: xl_migrate.c migrate_receive renames it to NAME once the source gives its permission to go
INCOMING_SUFFIX = "--incoming"

_UUID = re.compile(
    r"^[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}\Z"
)
_DISK = re.compile(r"^(?:phy|file):/[^\x00-\x1f\x7f]{1,4095}\Z")


def incoming_name(name: str) -> str:
    """The name xl gives the domain while it arrives; it must be a domain name too, because
    the destination must know that domain's label from the first moment it runs."""
    try:
        return check_name(name + INCOMING_SUFFIX)
    except BackendError:
        raise BackendError(
            "invalid-arg",
            f"domain '{name}' cannot migrate with its label: xl names it "
            f"'{name}{INCOMING_SUFFIX}' while it arrives, which is longer than a domain name "
            f"may be (64 characters); rename it to at most {64 - len(INCOMING_SUFFIX)}",
        ) from None


def check_disk(disk) -> str:
    if not isinstance(disk, str) or not _DISK.match(disk):
        raise BackendError(
            "invalid-arg",
            f"disk resource {disk!r} cannot be sent: expected phy:/PATH or file:/PATH",
        )
    return disk


def check_uuid(uuid) -> str:
    if not isinstance(uuid, str) or (uuid and not _UUID.match(uuid)):
        raise BackendError("invalid-arg", f"invalid domain UUID {uuid!r}")
    return uuid


def disk_resources(domain_xml: str) -> list[str]:
    """The disks of an xl domain's XML as resource names (``phy:`` for block devices, ``file:``
    otherwise), as the sHype checks name them (confinement.vmmeta.domain_devices)."""
    out = []
    for disk in domxml.parse(domain_xml).iterfind("devices/disk"):
        src = disk.find("source")
        if src is None:
            continue
        block = disk.get("type") == "block"
        value = src.get("dev" if block else "file")
        if value:
            out.append(("phy:" if block else "file:") + value)
    return out


def receiver_args(rec: dict, disks: list[str]) -> list[str]:
    """The receiver's arguments for a record (xl_record.make_record) and the domain's disks,
    each ``--option=value`` so that no value can be read as an option."""
    check_record(rec, "<migration record>")
    check_name(rec["name"])
    args = [f"--name={rec['name']}"]
    if rec["uuid"]:
        args.append(f"--uuid={check_uuid(rec['uuid'])}")
    if rec.get("owner"):
        args.append(f"--owner={rec['owner']}")
    label = rec.get("label")
    if label:
        args += [f"--label-policy={label['policy']}", f"--label={label['name']}"]
    args += [f"--disk={check_disk(d)}" for d in disks]
    return args


def transport(host: str, rec: dict, disks: list[str], *, receiver=RECEIVER, ssh=SSH) -> str:
    """The command xl runs by ``sh -c`` for ``migrate -s ""`` (host checked by migrate_host)."""
    remote = " ".join(shlex.quote(a) for a in (*receiver, *receiver_args(rec, disks)))
    return "exec " + " ".join(shlex.quote(a) for a in (*ssh, "--", host, remote))


def refusal_in(output: str) -> str | None:
    """The receiver's refusal in what xl printed, or None."""
    for line in (output or "").splitlines():
        at = line.find(REFUSAL_TAG)
        if at >= 0:
            return line[at + len(REFUSAL_TAG) :].strip()[:1000] or "no reason given"
    return None


def no_receiver(output: str) -> bool:
    """Whether xl gave up before the receiver's banner: nothing of ours answered."""
    text = output or ""
    return "banner" in text and (
        "unexpected data" in text or "truncated" in text or "eof" in text.lower()
    )
