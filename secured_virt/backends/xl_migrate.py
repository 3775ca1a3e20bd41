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

Both ends must keep the label on the domain under every name xl gives it: the destination's
``NAME--incoming`` (xl_save.receive_prepare), the source's ``NAME--migratedaway`` during the
final handshake and after it fails badly (``AwayLabel``).  Which name a domain runs under is
told by its domid from one plain ``xl list`` (``running_ids``): never from ``xl domid``, which
reads a failing xl as "no such domain".
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Collection
from pathlib import Path

from . import domxml
from .base import BackendError
from .xl_args import check_name
from .xl_cfg import XlConfig
from .xl_model import XlDomain
from .xl_parse import parse_list
from .xl_record import check_record
from .xl_run import detail, output_of

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
#: xl's name for the leaving domain on the source from the ready message on (xl_migrate.c
#: migrate_domain renames it before it gives the destination its permission to go): kept if
#: the final handshake fails badly, renamed back to NAME if the destination reports failure
AWAY_SUFFIX = "--migratedaway"
#: how often a failed ``xl list`` is tried before the answer counts as unknown, and the pause
LIST_TRIES = 3
LIST_PAUSE = 0.2

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


def away_name(name: str) -> str:
    """The name xl gives the leaving domain on the source during the final handshake; it must
    be a domain name too, because the domain must keep its label under it."""
    try:
        return check_name(name + AWAY_SUFFIX)
    except BackendError:
        raise BackendError(
            "invalid-arg",
            f"domain '{name}' cannot migrate with its label: xl names it '{name}{AWAY_SUFFIX}' "
            "on this host during the migration's final handshake, which is longer than a "
            f"domain name may be (64 characters); rename it to at most {64 - len(AWAY_SUFFIX)}",
        ) from None


def running_ids(backend) -> dict[str, int]:
    """Every domain xl runs now, ``{name: domid}``, from one plain ``xl list``.

    Not ``xl domid NAME``: it prints "maybe this domain does not exist" and exits 1 for any
    failure (libxl_name_to_domid returns an error when it cannot list the domains at all,
    and xl_misc.c main_domid says the same for both), so a failing xl would read as "no such
    domain" and a running domain would lose its label.  ``xl list`` fails loudly instead
    ("libxl_list_domain failed"), and a name missing from a listing that worked is certainly
    not running.  A failure is tried LIST_TRIES times, then raised as a BackendError."""
    why = ""
    for attempt in range(LIST_TRIES):
        if attempt:
            time.sleep(LIST_PAUSE)
        try:
            r = backend._run(["list"])
            if r.returncode == 0:
                return {e.name: e.domid for e in parse_list(r.stdout)}
            why = f"exited with status {r.returncode}: {detail(output_of(r))}"
        except BackendError as exc:
            why = str(exc)
    raise BackendError("operation-failed", f"`{backend.xl_path} list` failed: {why}")


def running_as(backend, domid: int, names: Collection[str]) -> list[str]:
    """Which of ``names`` the domain ``domid`` runs under now (a rename keeps the domid; a
    name another domain runs under is not its name).  BackendError if xl cannot tell."""
    ids = running_ids(backend)
    return [n for n in names if ids.get(n) == domid]


def recorded_domain(name: str, rec: dict) -> XlDomain:
    """``name`` with the migration record's owner and label (what its config's metadata
    says), for the domain while xl moves it under that name."""
    label = rec.get("label") or {}
    dom = XlDomain(name=name)
    dom.owner, dom.label_policy, dom.label = (
        rec.get("owner"),
        label.get("policy"),
        label.get("name"),
    )
    return dom


def transient_label(backend, name: str, rec: dict) -> None:
    """A transient config for ``name`` holding only the record's owner and label (and UUID):
    what the sHype state rebuilt from what runs reads for a domain running under that name."""
    dom = recorded_domain(name, rec)
    uuid = rec.get("uuid")
    cfg = XlConfig(f'name = "{name}"\n' + (f'uuid = "{uuid}"\n' if uuid else ""), name)
    dom.write_metadata(cfg)
    backend.transient_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    backend._write_file(backend._transient_path(name), cfg.text)


def _text(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


class AwayLabel:
    """The source's label follows the leaving domain through xl's ``NAME--migratedaway``.

    xl renames the domain on the source to NAME--migratedaway before it lets the destination
    go (xl_migrate.c migrate_domain); if the final handshake then fails badly, the domain
    stays here under that name, and if the destination reports failure, xl renames it back
    (which fails if NAME was taken meanwhile).  So before xl runs, NAME--migratedaway gets a
    transient config with the domain's label (it must not run already: it would get the
    label), and once xl is done ``settle`` tells by the domid which names the domain runs
    under: those keep their label, the others lose what we gave them.  NAME's transient
    config (a domain created or received here has one) is removed once the domain no longer
    runs as NAME, unless someone rewrote it meanwhile (then it is another domain's now); a
    defined config is a definition and stays.  If xl cannot tell, the label is kept under
    every name xl's status leaves possible (a running domain is never unlabelled) and
    ``note`` says what to check."""

    def __init__(self, backend, name: str, domid: int, rec: dict) -> None:
        self.backend, self.name, self.domid = backend, name, domid
        self.label = (rec.get("label") or {}).get("name")
        self.away = away_name(name)
        if self.away in running_ids(backend):
            raise BackendError(
                "operation-failed",
                f"cannot migrate domain '{name}': a domain named '{self.away}' runs on this "
                f"host, and xl renames '{name}' to that name during the final handshake (that "
                "domain would take its label meanwhile); destroy it, or rename it, first",
            )
        self.kept = _text(backend._transient_path(name))
        transient_label(backend, self.away, rec)
        #: the names the domain runs under once settled; why xl could not tell, if it could not
        self.running_as: list[str] = []
        self.unknown: str | None = None

    def settle(self, rc: int | None) -> list[str]:
        """Once xl is done (``rc`` its status, None if it did not end normally): keep the
        label under the names the domain runs as, remove it from the others."""
        try:
            self.running_as = running_as(self.backend, self.domid, (self.name, self.away))
        except BackendError as exc:
            self.unknown = str(exc)
            # xl exits 0 only once it destroyed its copy; otherwise either name may hold it
            self.running_as = [self.away] if rc == 0 else [self.name, self.away]
        if self.away not in self.running_as:
            self.backend._forget_transient(self.away)
        path = self.backend._transient_path(self.name)
        # NAME's file is removed only if it is ours still (nobody created another NAME here)
        if self.name not in self.running_as and self.kept is not None and _text(path) == self.kept:
            self.backend._forget_transient(self.name)
        return self.running_as

    def noted(self, exc: BackendError, output: str = "") -> BackendError:
        """exc (its type and code kept) with ``note`` added to its message; when the domain
        may have been left here under xl's name, xl's own verdict in ``output`` ("Migration
        failed during final handshake") replaces the last line xl printed, which after a
        failed handshake is the end of its warning, not what happened."""
        verdict = next(
            (ln.strip(" *") for ln in output.splitlines() if "Migration failed" in ln), None
        )
        if verdict and (self.unknown is not None or self.away in self.running_as):
            exc.message = f"cannot migrate domain '{self.name}': xl: {verdict}"
        exc.message = f"{exc.message}{self.note()}"
        exc.args = (exc.message,)
        return exc

    def note(self) -> str:
        """What a person must know about the domain's names here after a failed migration."""
        name, away = self.name, self.away
        if self.unknown is not None:
            where = " and ".join(f"'{n}'" for n in self.running_as)
            return (
                f"; xl could not then tell which name domain {self.domid} runs under here "
                f"({self.unknown}), so its label is kept under {where}: check `xl list` here "
                f"and on the destination, and remove {self.backend.transient_dir}/NAME.cfg "
                "of a name nothing runs under"
            )
        if away in self.running_as:
            relabel = f"; svirsh relabel {name} {self.label} if it has none" if self.label else ""
            return (
                f"; the domain is left on this host as '{away}' (domain {self.domid}), with its "
                "label: find out whether it runs on the destination before anything else. If "
                f"it does, destroy this copy (svirsh destroy {away}); if it does not, rename "
                f"this copy back (xl rename {away} {name}) before resuming it, and check its "
                f"label (svirsh dominfo {name}{relabel})"
            )
        if name not in self.running_as:
            return f"; domain '{name}' (domain {self.domid}) no longer runs on this host"
        return ""


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
