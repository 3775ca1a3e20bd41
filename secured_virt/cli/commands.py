"""svirsh's command table: virsh names, arguments and options, mapped to catalogue operations.

The table is declarative so that the client (which must start fast and import nothing heavy),
the use-case layer, bash completion and ``--help`` all read the same facts.  Each command names
the catalogue operation it needs (``op``), its positional arguments and its options, with
virsh's spelling.  Only the parser for the one command being run is built.
"""

from __future__ import annotations


class Opt:
    """An option: flags (e.g. ("--all",)), destination, help, kind flag|value|int."""

    __slots__ = ("dest", "flags", "help", "kind", "metavar")

    def __init__(self, flags, dest, help, kind="flag", metavar=None):
        self.flags, self.dest, self.help, self.kind, self.metavar = flags, dest, help, kind, metavar


class Arg:
    """A positional argument."""

    __slots__ = ("dest", "help", "metavar", "optional")

    def __init__(self, dest, help, optional=False, metavar=None):
        self.dest, self.help, self.optional, self.metavar = dest, help, optional, metavar


class Command:
    """One svirsh command (plain classes, not dataclasses: this is the client's start-up path,
    and importing dataclasses costs more than parsing)."""

    __slots__ = ("aliases", "args", "example", "name", "op", "opts", "reads", "summary", "target")

    def __init__(
        self,
        name,
        op,
        summary,
        args=(),
        opts=(),
        example="",
        reads=False,
        target="domain",
        aliases=(),
    ):
        self.name, self.op, self.summary = name, op, summary
        self.args, self.opts, self.example = tuple(args), tuple(opts), example
        self.reads = reads
        #: the argument holding the VM name ("domain"), or None when the target is computed
        self.target = target
        self.aliases = tuple(aliases)

    def all_opts(self) -> tuple:
        if self.reads:
            return (*self.opts, JSON_OPT)
        return self.opts


DOM = Arg("domain", "domain name (names are data: use -- before a name that starts with '-')")
_LIVE = (
    Opt(("--live",), "live", "affect the running domain"),
    Opt(("--config",), "config", "affect the persistent configuration"),
    Opt(("--current",), "current", "affect the current state (running or persistent)"),
)


#: virsh's pool and volume arguments, given by position or by option (the service merges them)
_POOL = Arg("pool", "storage pool name (default: your realm's pool)", optional=True)
_POOL_OPT = Opt(("--pool",), "pool_opt", "storage pool name", "value", "POOL")
_VOL = Arg("vol", "volume name (with --pool) or path", optional=True)
_VOL_OPT = Opt(("--vol",), "vol_opt", "volume name or path", "value", "VOL")


def _c(name, op, summary, args=(DOM,), opts=(), example="", reads=False, target="domain"):
    return Command(name, op, summary, args, opts, example, reads, target)


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        _c(
            "list",
            "list",
            "list the domains you may see (running only, unless --all)",
            args=(),
            opts=(
                Opt(("--inactive",), "inactive", "list inactive domains only"),
                Opt(("--all",), "all", "include inactive domains"),
                Opt(("--transient",), "transient", "list transient domains"),
                Opt(("--persistent",), "persistent", "list persistent domains"),
                Opt(("--with-snapshot",), "with_snapshot", "list domains with a snapshot"),
                Opt(("--without-snapshot",), "without_snapshot", "list domains without a snapshot"),
                Opt(("--state-running",), "state_running", "list running domains"),
                Opt(("--state-paused",), "state_paused", "list paused domains"),
                Opt(("--state-shutoff",), "state_shutoff", "list shut-off domains"),
                Opt(("--state-other",), "state_other", "list domains in other states"),
                Opt(("--autostart",), "autostart", "list domains with autostart enabled"),
                Opt(("--no-autostart",), "no_autostart", "list domains with autostart off"),
                Opt(
                    ("--with-managed-save",),
                    "with_managed_save",
                    "list domains with a managed save image",
                ),
                Opt(
                    ("--without-managed-save",),
                    "without_managed_save",
                    "list domains without a managed save image",
                ),
                Opt(("--uuid",), "uuid", "print domain UUIDs only"),
                Opt(("--name",), "name", "print domain names only"),
                Opt(("--id",), "id", "print the ids of running domains only"),
                Opt(("--table",), "table", "print the table (the default)"),
                Opt(("--managed-save",), "managed_save", "show a saved domain as 'saved'"),
                Opt(("--title",), "title", "add the Title column"),
                Opt(
                    ("--label",),
                    "label",
                    "add xm list --label's Mem(MiB), VCPUs, Time(s) and ACM-Label columns",
                ),
                Opt(
                    ("--svirt",),
                    "svirt",
                    "add the sVirt-Label column: a running VM's category pair and the DAC "
                    "label its realm's QEMU runs as (with --label: both labels)",
                ),
                Opt(("--long",), "long", "print each domain's details and security section"),
                Opt(
                    ("--format",),
                    "format",
                    "sxp: --long as xm list --long's s-expressions (for tools parsing xm)",
                    kind="value",
                    metavar="text|sxp",
                ),
            ),
            example="svirsh list --all",
            reads=True,
            target=None,
        ),
        _c(
            "dominfo",
            "dominfo",
            "show basic information about a domain",
            reads=True,
            example="svirsh dominfo alice-web",
        ),
        _c(
            "domstate",
            "domstate",
            "show a domain's state",
            reads=True,
            opts=(Opt(("--reason",), "reason", "also show the reason for the state"),),
            example="svirsh domstate alice-web",
        ),
        _c("domid", "domid", "show a domain's numeric id", reads=True),
        _c("domuuid", "domid", "show a domain's UUID", reads=True),
        _c(
            "dumpxml",
            "dumpxml",
            "show a domain's XML configuration",
            reads=True,
            opts=(
                Opt(("--inactive",), "inactive", "show the persistent configuration"),
                Opt(("--security-info",), "security_info", "include security-sensitive data"),
            ),
        ),
        _c(
            "start",
            "start",
            "start a defined (inactive) domain",
            opts=(Opt(("--paused",), "paused", "leave the guest paused after start"),),
            example="svirsh start alice-web",
        ),
        _c("shutdown", "shutdown", "gracefully shut a domain down"),
        _c("reboot", "reboot", "reboot a domain"),
        _c("reset", "reset", "reset a domain (hard reset, no guest shutdown)"),
        _c(
            "destroy",
            "destroy",
            "stop a domain immediately (like pulling the plug)",
            opts=(Opt(("--graceful",), "graceful", "terminate gracefully"),),
        ),
        _c("suspend", "suspend", "suspend (pause) a running domain"),
        _c("resume", "resume", "resume a suspended domain"),
        _c(
            "save",
            "save",
            "save a running domain's state to a file and stop it",
            args=(
                DOM,
                Arg(
                    "file",
                    "where to save (through svirtd: a plain name kept in your save directory)",
                ),
            ),
        ),
        _c(
            "restore",
            "restore",
            "restore a domain from a saved state file",
            args=(Arg("file", "the saved state file"),),
            target=None,
        ),
        _c(
            "save-list",
            "save-list",
            "list your save images: file, the VM each holds, size and time "
            "(your own save directory; root: --user USER's)",
            args=(),
            opts=(Opt(("--user",), "user", "root only: list USER's save directory", "value"),),
            reads=True,
            target=None,
        ),
        _c(
            "save-delete",
            "save-delete",
            "delete one of your save images (a plain name from save-list)",
            args=(Arg("file", "the save image's name in your save directory"),),
            target=None,
        ),
        _c(
            "define",
            "define",
            "define (but don't start) a domain from an XML file",
            args=(Arg("file", "domain XML file (read by svirsh, as you)"),),
            target=None,
        ),
        _c("undefine", "undefine", "remove a persistent domain's definition"),
        _c(
            "create",
            "create",
            "create and start a transient domain from an XML file",
            args=(Arg("file", "domain XML file (read by svirsh, as you)"),),
            target=None,
            opts=(Opt(("--paused",), "paused", "leave the guest paused after creation"),),
        ),
        _c(
            "console",
            "console",
            "connect to a domain's serial console (Ctrl-] leaves)",
            opts=(
                Opt(
                    ("--escape",),
                    "escape",
                    "escape sequence to leave, e.g. ^] (default)",
                    "value",
                    "SEQ",
                ),
            ),
            example="svirsh console alice-web",
        ),
        _c(
            "setmem",
            "setmem",
            "change a domain's current memory",
            args=(DOM, Arg("size", "new size; suffixes K, M, G (default KiB)")),
            opts=_LIVE,
        ),
        _c(
            "setmaxmem",
            "setmaxmem",
            "change a domain's maximum memory",
            args=(DOM, Arg("size", "new size; suffixes K, M, G (default KiB)")),
            opts=_LIVE,
        ),
        _c(
            "setvcpus",
            "setvcpus",
            "change a domain's number of virtual CPUs",
            args=(DOM, Arg("count", "number of virtual CPUs")),
            opts=_LIVE,
        ),
        _c(
            "attach-disk",
            "attach-disk",
            "attach a disk to a domain",
            args=(
                DOM,
                Arg("source", "disk image or device path"),
                Arg("target", "target device, e.g. vdb"),
            ),
            opts=(
                Opt(("--driver",), "driver", "driver name", "value"),
                Opt(("--subdriver",), "subdriver", "image format, e.g. raw or qcow2", "value"),
                Opt(("--type",), "type", "disk or cdrom", "value"),
                Opt(("--mode",), "mode", "readonly or shareable", "value"),
                Opt(("--persistent",), "persistent", "make the change persistent"),
                *_LIVE,
            ),
        ),
        _c(
            "detach-disk",
            "detach-disk",
            "detach a disk from a domain",
            args=(DOM, Arg("target", "target device, e.g. vdb")),
            opts=(Opt(("--persistent",), "persistent", "make the change persistent"), *_LIVE),
        ),
        _c(
            "attach-interface",
            "attach-interface",
            "attach a network interface to a domain",
            args=(DOM, Arg("type", "network or bridge"), Arg("source", "network or bridge name")),
            opts=(
                Opt(("--mac",), "mac", "MAC address", "value"),
                Opt(("--model",), "model", "NIC model, e.g. virtio", "value"),
                Opt(("--persistent",), "persistent", "make the change persistent"),
                *_LIVE,
            ),
        ),
        _c(
            "detach-interface",
            "detach-interface",
            "detach a network interface from a domain",
            args=(DOM, Arg("type", "network or bridge")),
            opts=(
                Opt(("--mac",), "mac", "MAC address of the interface", "value"),
                Opt(("--persistent",), "persistent", "make the change persistent"),
                *_LIVE,
            ),
        ),
        _c(
            "migrate",
            "migrate",
            "migrate a domain to another host",
            args=(DOM, Arg("desturi", "destination connection URI")),
            opts=(
                Opt(("--live",), "live", "live migration"),
                Opt(("--persistent",), "persistent", "persist the domain on the destination"),
                Opt(("--undefinesource",), "undefinesource", "undefine it on the source"),
                Opt(("--verbose",), "verbose", "show migration progress"),
            ),
        ),
        _c(
            "autostart",
            "autostart",
            "start a domain when the host boots: svirtd starts it then as you, checked like "
            "your own start (your rights, the sHype/ACM policy, your realm's quota); --disable "
            "turns that off",
            opts=(
                Opt(
                    ("--disable",),
                    "disable",
                    "turn autostart off (libvirt's own flag, which root may set, too)",
                ),
            ),
        ),
        _c(
            "snapshot-create-as",
            "snapshot-create",
            "take a snapshot of a domain",
            args=(
                DOM,
                Arg("snapshot", "snapshot name", optional=True),
                Arg("description", "description", optional=True),
            ),
        ),
        _c("snapshot-list", "snapshot-list", "list a domain's snapshots", reads=True),
        _c(
            "snapshot-revert",
            "snapshot-revert",
            "revert a domain to a snapshot",
            args=(DOM, Arg("snapshot", "snapshot name")),
        ),
        _c(
            "snapshot-delete",
            "snapshot-delete",
            "delete a snapshot",
            args=(DOM, Arg("snapshot", "snapshot name")),
        ),
        _c(
            "getlabel",
            "getlabel",
            "show a domain's sHype/ACM label (--resource: a resource's, --vif N: an interface's)",
            args=(
                Arg(
                    "domain",
                    "domain name, or with --resource the resource (a path, file:/path, "
                    "phy:/dev/...)",
                ),
            ),
            opts=(
                Opt(("--resource",), "resource", "show a resource's label (operation resources)"),
                Opt(("--vif",), "vif", "show the label of the domain's interface N", "value", "N"),
            ),
            reads=True,
            example="svirsh getlabel alice-web",
        ),
        _c(
            "setlabel",
            "setlabel",
            "label an inactive domain (or with --resource, a disk image or device)",
            args=(
                Arg(
                    "domain",
                    "domain name, or with --resource the resource (a path, "
                    "file:/path, phy:/dev/...)",
                ),
                Arg("label", "a VM (or resource) label of the active policy"),
            ),
            opts=(
                Opt(("--resource",), "resource", "label a resource instead of a domain"),
                Opt(
                    ("--vif",),
                    "vif",
                    "label the domain's network interface N (a resource label; operation "
                    "setlabel-resource)",
                    "value",
                    "N",
                ),
            ),
            example="svirsh setlabel alice-web dom_HomeBanking",
        ),
        _c(
            "rmlabel",
            "setlabel",
            "remove the label of an inactive domain (--resource: of a resource not in use, "
            "--vif N: of an interface)",
            args=(
                Arg(
                    "domain",
                    "domain name, or with --resource the resource (a path, file:/path, "
                    "phy:/dev/...)",
                ),
            ),
            opts=(
                Opt(
                    ("--resource",),
                    "resource",
                    "remove a resource's label (operation setlabel-resource)",
                ),
                Opt(
                    ("--vif",),
                    "vif",
                    "remove the label of the domain's interface N (operation setlabel-resource)",
                    "value",
                    "N",
                ),
            ),
            example="svirsh rmlabel alice-web",
        ),
        _c(
            "relabel",
            "relabel",
            "change the label of a domain, also while it runs (ACM-checked)",
            args=(DOM, Arg("label", "the new VM label")),
            example="svirsh relabel alice-web dom_Fun",
        ),
        _c(
            "labels",
            "policy-show",
            "list the labels of the active sHype/ACM policy",
            args=(),
            reads=True,
            target=None,
            opts=(Opt(("--type",), "type", "vm (default), res or any", "value"),),
            example="svirsh labels --type res",
        ),
        _c(
            "resources",
            "resources",
            "list labelled resources and their labels",
            args=(),
            reads=True,
            target=None,
        ),
        _c(
            "dry-run",
            "dry-run",
            "would this domain start now?  every ACM check with its verdict",
            reads=True,
            example="svirsh dry-run alice-web",
        ),
        # -- the catalogue's monitoring and maintenance operations (46, 49-61, 63) ----------
        _c(
            "nodeinfo",
            "hostinfo",
            "show the host's CPUs and memory",
            args=(),
            reads=True,
            target=None,
            example="svirsh nodeinfo",
        ),
        _c("hostinfo", "hostinfo", "the same as nodeinfo", args=(), reads=True, target=None),
        _c("vncdisplay", "vncdisplay", "show a running domain's VNC display", reads=True),
        _c(
            "screenshot",
            "screenshot",
            "take a screenshot of a domain's display (written to standard output)",
            opts=(Opt(("--screen",), "screen", "which screen (default 0)", "value", "N"),),
            reads=True,
            example="svirsh screenshot alice-web > alice-web.ppm",
        ),
        _c(
            "send-key",
            "send-key",
            "send key codes to a domain",
            args=(DOM, Arg("keys", "key codes separated by ',' (e.g. 29,56,111)")),
            opts=(
                Opt(("--codeset",), "codeset", "linux (default), xt, usb, qnum, ...", "value"),
                Opt(("--holdtime",), "holdtime", "milliseconds to hold the keys", "value", "MS"),
            ),
        ),
        _c(
            "domblklist",
            "domblklist",
            "list a domain's block devices",
            reads=True,
            example="svirsh domblklist alice-web",
        ),
        _c("domiflist", "domiflist", "list a domain's network interfaces", reads=True),
        _c("dommemstat", "dommemstat", "show a domain's memory statistics", reads=True),
        _c(
            "domblkstat",
            "domblkstat",
            "show a block device's statistics",
            args=(DOM, Arg("device", "the disk's target, e.g. vda")),
            reads=True,
        ),
        _c(
            "domifstat",
            "domifstat",
            "show a network interface's statistics",
            args=(DOM, Arg("device", "the interface's host-side name, e.g. vnet0")),
            reads=True,
        ),
        _c("managedsave", "managedsave", "save a domain's state for its next start"),
        _c("managedsave-remove", "managedsave-remove", "discard a domain's managed save image"),
        _c(
            "dump",
            "dump",
            "write a core dump of a domain",
            args=(
                DOM,
                Arg(
                    "file",
                    "where to write (through svirtd: a plain name kept in your save directory)",
                ),
            ),
            opts=(Opt(("--memory-only",), "memory_only", "dump the guest's memory only"),),
        ),
        _c("inject-nmi", "inject-nmi", "inject a non-maskable interrupt into a domain"),
        _c(
            "desc",
            "desc",
            "show or change a domain's description (or with --title its title)",
            opts=(
                Opt(("--title",), "title", "the title instead of the description"),
                Opt(("--new-desc",), "new_desc", "set this text", "value", "TEXT"),
                *_LIVE,
            ),
            example="svirsh desc alice-web --new-desc 'AliceCorp web front'",
        ),
        _c(
            "vcpupin",
            "vcpupin",
            "show or set which host CPUs a domain's vCPUs may run on",
            args=(
                DOM,
                Arg("vcpu", "the vCPU number", optional=True),
                Arg("cpulist", "host CPUs, e.g. 0-3 or 0,2", optional=True),
            ),
            opts=_LIVE,
            example="svirsh vcpupin alice-web 0 1",
        ),
        # -- storage volumes: the caller's realm's pool (65-68) ----------------------------
        _c(
            "vol-list",
            "vol-list",
            "list the volumes of a storage pool (default: your realm's)",
            args=(_POOL,),
            opts=(
                _POOL_OPT,
                Opt(("--details",), "details", "add the Type, Capacity and Allocation columns"),
            ),
            reads=True,
            target=None,
            example="svirsh vol-list acme --details",
        ),
        _c(
            "vol-info",
            "vol-info",
            "show a storage volume's type, capacity and allocation",
            args=(_VOL,),
            opts=(
                _VOL_OPT,
                Opt(("--pool",), "pool", "the pool holding the volume", "value", "POOL"),
                Opt(("--bytes",), "bytes", "sizes in bytes instead of scaled units"),
            ),
            reads=True,
            target=None,
            example="svirsh vol-info --pool acme disk1.qcow2",
        ),
        _c(
            "vol-create-as",
            "vol-create-as",
            "create a volume in a storage pool (within your realm's quota)",
            args=(
                _POOL,
                Arg("name", "name of the volume (one file name, no '/')", optional=True),
                Arg(
                    "capacity",
                    "size, e.g. 10G (units: b, K, M, G, T; KB, MB... are powers of 1000)",
                    optional=True,
                ),
            ),
            opts=(
                _POOL_OPT,
                Opt(("--name",), "name_opt", "name of the volume", "value", "NAME"),
                Opt(("--capacity",), "capacity_opt", "size of the volume", "value", "SIZE"),
                Opt(("--allocation",), "allocation", "initial allocation", "value", "SIZE"),
                Opt(("--format",), "format", "raw or qcow2", "value", "FORMAT"),
            ),
            target=None,
            example="svirsh vol-create-as acme disk1.qcow2 10G --format qcow2",
        ),
        _c(
            "vol-delete",
            "vol-delete",
            "delete a storage volume",
            args=(_VOL,),
            opts=(
                _VOL_OPT,
                Opt(("--pool",), "pool", "the pool holding the volume", "value", "POOL"),
            ),
            target=None,
            example="svirsh vol-delete --pool acme disk1.qcow2",
        ),
    )
}


class UsageError(Exception):
    """Bad command line: exit code 2 with the message."""


JSON_OPT = Opt(("--json",), "json", "print the result as JSON")


def command_parser(cmd: Command, prog: str = "svirsh"):
    """The full argparse parser: for --help, and for anything the fast path does not take."""
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message):  # never exit from inside the library
            raise UsageError(f"{self.prog}: {message}")

    example = cmd.example or " ".join(
        [f"{prog} {cmd.name}"]
        + [("alice-web" if a.dest == "domain" else a.dest.upper()) for a in cmd.args]
    )
    epilog = f"example:\n  {example}"
    p = _Parser(
        prog=f"{prog} {cmd.name}",
        description=f"{cmd.summary}.  Checked against your roles for operation "
        f"'{cmd.op}' before anything reaches the hypervisor.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for a in cmd.args:
        p.add_argument(a.dest, help=a.help, nargs="?" if a.optional else None, metavar=a.metavar)
    for o in cmd.all_opts():
        if o.kind == "flag":
            p.add_argument(*o.flags, dest=o.dest, action="store_true", help=o.help)
        else:
            p.add_argument(
                *o.flags,
                dest=o.dest,
                help=o.help,
                metavar=o.metavar,
                type=int if o.kind == "int" else str,
            )
    return p


def fast_parse(cmd: Command, argv: list[str]) -> dict | None:
    """Parse the common, well-formed cases without argparse (it costs the client ~8 ms).

    Returns exactly what argparse would, or None for anything else (help, errors, abbreviated
    options...), which then goes to argparse for its messages."""
    opts = cmd.all_opts()
    by_flag = {f: o for o in opts for f in o.flags}
    out: dict = {o.dest: (False if o.kind == "flag" else None) for o in opts}
    positionals: list[str] = []
    i, options_done = 0, False
    while i < len(argv):
        a = argv[i]
        if not options_done and a == "--":
            if not cmd.args or i == len(argv) - 1 or argv.count("--") > 1:
                return None  # argparse's own quirks around a bare "--": let it answer
            options_done = True
        elif not options_done and a.startswith("-") and a != "-":
            key, eq, val = a.partition("=")
            o = by_flag.get(key)
            if o is None or (o.kind == "flag" and eq):
                return None
            if o.kind == "flag":
                out[o.dest] = True
            else:
                if not eq:
                    i += 1
                    if i >= len(argv) or argv[i].startswith("-"):
                        return None
                    val = argv[i]
                if o.kind == "int":
                    digits = val.removeprefix("-")
                    if not (digits.isascii() and digits.isdigit()):
                        return None
                    val = int(val)
                out[o.dest] = val
        else:
            positionals.append(a)
        i += 1
    required = sum(1 for x in cmd.args if not x.optional)
    if not required <= len(positionals) <= len(cmd.args):
        return None
    for k, arg in enumerate(cmd.args):
        out[arg.dest] = positionals[k] if k < len(positionals) else None
    return out


def parse_command(name: str, argv: list[str], prog: str = "svirsh") -> tuple[Command, dict]:
    cmd = COMMANDS.get(name)
    if cmd is None:
        raise UsageError(f"{prog}: unknown command '{name}' (try '{prog} help')")
    fast = fast_parse(cmd, argv)
    if fast is not None:
        return cmd, fast
    ns = command_parser(cmd, prog).parse_args(argv)
    return cmd, vars(ns)
