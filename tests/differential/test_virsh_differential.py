"""svirsh speaks virsh exactly: the same commands, run by virsh and by svirsh on the same
libvirt, must print the same stdout and exit with the same status.

Compared on libvirt's test driver (fresh node each side for reads; the same sequence on two
fresh copies for changes) as root (direct mode) and as real non-root users through a real
svirtd, and once on real QEMU.  Everything svirsh may print or do differently is listed in
INTENDED_DIFFERENCES below, with its reason - nowhere else.
"""

from __future__ import annotations

import os
import re

import pytest
from conftest import BOB_VMS, pa_xml
from diff_helpers import (
    Out,
    mask_volatile,
    svirsh_as,
    svirsh_direct,
    virsh,
    virsh_sequence,
)
from svtd_helpers import write_root_file

pytestmark = pytest.mark.integration

# -- the one place where svirsh may differ from virsh ---------------------------------------
INTENDED_DIFFERENCES = {
    # dominfo: svirsh prints every line virsh prints, in virsh's order, then its own
    "dominfo-own-fields": (
        (
            "Owner",
            "Realm",
            "ACM label",
            "Label name",
            "Policy name",
            "ssidref",
            "sVirt categories",
            "DAC label",
            "SELinux",
        ),
        "svirsh's own facts (the VM's owner and realm, its sHype/ACM label, its sVirt category "
        "pair, the DAC label its realm's QEMU runs as, whether SELinux could enforce the pair) "
        "come after virsh's lines, "
        "under names virsh does not use, so a script reading virsh's fields still finds them",
    ),
    # usage errors: same message, svirsh's exit status
    "usage-exit-status": (
        {1: 2},
        "svirsh's documented exit codes tell a refused command line (2) from a failed "
        "operation (1) and a denial (3); virsh exits 1 for all of them",
    ),
    # a name outside a partial grant: refused, whether such a VM exists or not
    "outside-the-grant": (
        3,
        "a user who may see only some VMs is refused (exit 3) for any other name, existing or "
        "not, so svirsh never tells them which other VMs exist; virsh, seeing everything, says "
        "'failed to get domain' (exit 1)",
    ),
    # options svirsh has and virsh lacks, per command ("*": every command)
    "extra-options": (
        {
            "*": {"--help"},
            "list": {"--label", "--long", "--format", "--svirt"},
            "console": {"--escape"},
        },
        "--help: svirsh's per-command help (virsh has `help COMMAND`); --json: machine-readable "
        "output of read commands; list --label/--long/--format sxp: xm's Mem/VCPUs/Time and "
        "ACM-Label columns, per-VM security details, xm's s-expressions; list --svirt: the "
        "sVirt-Label column (category pair, realm DAC uid); console --escape: "
        "virsh sets the escape with its global -e",
    ),
    # options of the read commands virsh has and svirsh does not offer
    "not-offered": (
        {
            "list": {"--with-checkpoint", "--without-checkpoint"},
            "dumpxml": {"--update-cpu", "--migratable", "--xpath", "--wrap"},
            "snapshot-list": {
                "--parent",
                "--roots",
                "--leaves",
                "--no-leaves",
                "--metadata",
                "--no-metadata",
                "--inactive",
                "--active",
                "--disk-only",
                "--internal",
                "--external",
                "--tree",
                "--from",
                "--current",
                "--descendants",
                "--name",
                "--topological",
            },
        },
        "svirsh has no checkpoint commands; dumpxml's CPU/migration rewriting and XPath "
        "filtering and snapshot-list's tree views and filters are not implemented yet (each "
        "would need its own check that it shows nothing the caller may not see)",
    ),
}
OWN_FIELDS = INTENDED_DIFFERENCES["dominfo-own-fields"][0]
USAGE_EXIT = INTENDED_DIFFERENCES["usage-exit-status"][0]
READ_COMMANDS = ("list", "dominfo", "domstate", "domid", "domuuid", "dumpxml", "snapshot-list")

# -- what is compared ------------------------------------------------------------------------
VMS = ("alice-web", "alice-db", "bob-build", "carol-lab", "shared-dns")
LIST_CASES = [
    [],
    ["--all"],
    ["--inactive"],
    ["--name"],
    ["--uuid"],
    ["--id"],
    ["--all", "--name"],
    ["--all", "--uuid"],
    ["--all", "--id"],
    ["--all", "--name", "--uuid", "--id"],
    ["--name", "--id"],
    ["--table"],
    ["--all", "--table"],
    ["--title"],
    ["--all", "--title"],
    ["--inactive", "--title"],
    ["--persistent"],
    ["--all", "--transient"],
    ["--all", "--autostart"],
    ["--all", "--no-autostart"],
    ["--state-running"],
    ["--state-paused"],
    ["--state-shutoff"],
    ["--all", "--state-other"],
    ["--all", "--state-running", "--state-paused"],
    ["--inactive", "--state-running"],
    ["--all", "--with-snapshot"],
    ["--all", "--without-snapshot"],
    ["--all", "--with-managed-save"],
    ["--all", "--without-managed-save"],
    ["--all", "--managed-save"],
    ["--table", "--name"],  # refused, with virsh's message
    ["--table", "--uuid"],
    ["--table", "--id"],
]
READ_CASES = (
    [["list", *c] for c in LIST_CASES]
    + [[c, vm] for c in ("dominfo", "domstate", "domid", "domuuid") for vm in VMS]
    + [["domstate", vm, "--reason"] for vm in VMS]
    + [["dumpxml", vm, *f] for vm in ("alice-web", "alice-db", "carol-lab") for f in ([],)]
    + [
        ["dumpxml", "alice-web", *f]
        for f in (["--inactive"], ["--security-info"], ["--inactive", "--security-info"])
    ]
    + [["snapshot-list", "alice-web"]]
    + [[c, vm] for c in ("domblklist", "domiflist") for vm in ("alice-web", "alice-db")]
    + [[c, "no-such-vm"] for c in (*READ_COMMANDS, "domblklist", "domiflist") if c != "list"]
)


def _own_tail(stdout: str) -> tuple[str, list[str]]:
    """dominfo: (virsh's part, svirsh's own lines); the own lines must come last."""
    lines = stdout.split("\n")
    own = [i for i, line in enumerate(lines) if line.split(":", 1)[0] in OWN_FIELDS]
    if not own:
        return stdout, []
    first = own[0]
    assert own == list(range(first, first + len(own))), f"own fields interleaved:\n{stdout}"
    assert lines[first + len(own) :] == ["", ""], f"own fields not last:\n{stdout}"
    return "\n".join(lines[:first] + lines[first + len(own) :]), lines[first : first + len(own)]


def assert_same(argv: list[str], theirs: Out, ours: Out) -> None:
    """svirsh's stdout and exit status are virsh's, but for INTENDED_DIFFERENCES."""
    got = mask_volatile(ours.stdout)
    if argv[0] == "dominfo" and ours.rc == 0:
        got, _own = _own_tail(got)
    want = mask_volatile(theirs.stdout)
    rc = ours.rc
    if theirs.rc == 1 and ours.rc == USAGE_EXIT[1]:
        # a refused command line: virsh's message, svirsh's usage status
        assert theirs.stderr.strip() and theirs.stderr.strip() in ours.stderr, (theirs, ours)
        rc = 1
    context = f"{' '.join(argv)}\n--- virsh:\n{theirs}\n--- svirsh:\n{ours}"
    assert got == want, context
    assert rc == theirs.rc, context


def _error_text_matches(theirs: Out, ours: Out) -> None:
    assert ours.stderr == theirs.stderr, (theirs, ours)


# -- reads on the test driver ----------------------------------------------------------------
@pytest.mark.parametrize("argv", READ_CASES, ids=lambda a: " ".join(a))
def test_reads_as_root_direct_mode(host, fresh_node, direct_uri, argv):
    theirs = virsh(fresh_node(), *argv)
    ours = svirsh_direct(host.config, direct_uri(), *argv)
    assert_same(argv, theirs, ours)
    if "no-such-vm" in argv:
        _error_text_matches(theirs, ours)


def test_reads_as_a_user_who_may_see_everything(host, fresh_node, test_users, readable_src):
    """One svirtd, many reads: none changes state, so one daemon serves them all."""
    alice = test_users["svt-alice"]
    for argv in READ_CASES:
        theirs = virsh(fresh_node(), *argv)
        ours = svirsh_as(alice, readable_src, host.socket, *argv)
        assert_same(argv, theirs, ours)
        if "no-such-vm" in argv:
            _error_text_matches(theirs, ours)


def test_lists_of_a_user_who_sees_some_vms_match_virsh_on_just_those(
    host, fresh_node, test_users, readable_src
):
    """svt-bob may see BOB_VMS only: his lists are virsh's on a node holding only them."""
    bob = test_users["svt-bob"]
    shown = virsh(fresh_node(BOB_VMS), "list", "--all", "--name").stdout.split()
    assert sorted(shown) == sorted(BOB_VMS)
    for case in LIST_CASES:
        argv = ["list", *case]
        theirs = virsh(fresh_node(BOB_VMS), *argv)
        ours = svirsh_as(bob, readable_src, host.socket, *argv)
        assert_same(argv, theirs, ours)
    for vm in BOB_VMS:
        argv = ["dominfo", vm]
        assert_same(
            argv, virsh(fresh_node(), *argv), svirsh_as(bob, readable_src, host.socket, *argv)
        )


# -- changes on the test driver --------------------------------------------------------------
DOMAIN_XML = """<domain type="test">
  <name>{name}</name>
  <uuid>4dea22b3-1d52-d8f3-2516-782e98a23ff0</uuid>
  <title>made by the differential test</title>
  <memory unit="MiB">256</memory>
  <vcpu>1</vcpu>
  <os><type arch="x86_64">hvm</type></os>
</domain>
"""

SEQUENCES = {
    "lifecycle": [
        ["start", "alice-db"],
        ["start", "alice-db"],
        ["suspend", "alice-db"],
        ["suspend", "alice-db"],
        ["domstate", "alice-db", "--reason"],
        ["resume", "alice-db"],
        ["resume", "alice-db"],
        ["domstate", "alice-db", "--reason"],
        ["reboot", "alice-db"],
        ["reset", "alice-db"],
        ["shutdown", "alice-db"],
        ["domstate", "alice-db", "--reason"],
        ["shutdown", "alice-db"],
        ["destroy", "alice-web"],
        ["destroy", "alice-web"],
        ["domstate", "alice-web", "--reason"],
        ["dominfo", "alice-web"],
        ["list", "--all"],
        ["list", "--state-shutoff"],
        ["start", "no-such-vm"],
    ],
    "settings": [
        ["setmem", "alice-web", "524288"],
        ["dominfo", "alice-web"],
        ["setmaxmem", "alice-db", "2097152"],
        ["setvcpus", "alice-db", "2", "--config"],
        ["dominfo", "alice-db"],
        ["autostart", "alice-db"],
        ["list", "--all", "--autostart"],
        ["dominfo", "alice-db"],
        ["autostart", "alice-db", "--disable"],
        ["list", "--all", "--no-autostart"],
    ],
    "snapshots": [
        ["snapshot-create-as", "carol-lab", "b"],
        ["snapshot-create-as", "carol-lab", "A", "the second"],
        ["snapshot-list", "carol-lab"],
        ["list", "--all", "--with-snapshot"],
        ["list", "--all", "--without-snapshot"],
        ["snapshot-revert", "carol-lab", "A"],
        ["domstate", "carol-lab", "--reason"],
        ["snapshot-delete", "carol-lab", "b"],
        ["snapshot-list", "carol-lab"],
    ],
    "define": [
        ["define", "{xml}"],
        ["list", "--all", "--title"],
        ["start", "diff-vm"],
        ["dominfo", "diff-vm"],
        ["destroy", "diff-vm"],
        ["undefine", "diff-vm"],
        ["list", "--all"],
        ["create", "{xml}"],
        ["list", "--all", "--transient"],
        ["dominfo", "diff-vm"],
        ["destroy", "diff-vm"],
        ["list", "--all"],
    ],
}


def _xml_file(host) -> str:
    path = host.base / "diff-vm.xml"
    path.write_text(DOMAIN_XML.format(name="diff-vm"))
    path.chmod(0o644)
    return str(path)


@pytest.mark.parametrize("name", sorted(SEQUENCES))
def test_change_sequences_through_svirtd(host, fresh_node, test_users, readable_src, name):
    """The same commands on two fresh copies: one virsh connection, one svirtd."""
    xml = _xml_file(host)
    steps = [[a.replace("{xml}", xml) for a in step] for step in SEQUENCES[name]]
    theirs = virsh_sequence(fresh_node(), steps)
    alice = test_users["svt-alice"]
    for argv, their in zip(steps, theirs, strict=True):
        assert_same(argv, their, svirsh_as(alice, readable_src, host.socket, *argv))


SINGLE_CHANGES = [
    ["start", "alice-db"],
    ["start", "alice-web"],
    ["destroy", "alice-web"],
    ["destroy", "alice-db"],
    ["suspend", "alice-web"],
    ["suspend", "alice-db"],
    ["resume", "carol-lab"],
    ["resume", "alice-web"],
    ["shutdown", "alice-web"],
    ["reboot", "alice-web"],
    ["reset", "alice-web"],
    ["setmem", "alice-web", "524288"],
    ["setmaxmem", "alice-db", "2097152"],
    ["setvcpus", "alice-web", "1"],
    ["autostart", "alice-web"],
    ["autostart", "alice-web", "--disable"],
    ["undefine", "alice-db"],
    ["snapshot-create-as", "alice-web", "s1"],
    ["define", "{xml}"],
    ["create", "{xml}"],
    ["save", "alice-web", "{save}"],
    ["start", "no-such-vm"],
]


@pytest.mark.parametrize("argv", SINGLE_CHANGES, ids=lambda a: " ".join(a))
def test_single_changes_as_root_direct_mode(host, fresh_node, direct_uri, tmp_path, argv):
    xml = _xml_file(host)
    saves = {"virsh": tmp_path / "v.save", "svirsh": tmp_path / "s.save"}

    def concrete(who):
        return [a.replace("{xml}", xml).replace("{save}", str(saves[who])) for a in argv]

    theirs = virsh(fresh_node(), *concrete("virsh"))
    ours = svirsh_direct(host.config, direct_uri(), *concrete("svirsh"))
    theirs = Out(theirs.rc, theirs.stdout.replace(str(saves["virsh"]), "<save>"), theirs.stderr)
    ours = Out(ours.rc, ours.stdout.replace(str(saves["svirsh"]), "<save>"), ours.stderr)
    assert_same(argv, theirs, ours)


# -- --help: option names per command ----------------------------------------------------------
def _virsh_options(command: str) -> tuple[set[str], set[str]] | None:
    """(options, arguments virsh also takes by name): "[--domain] <string>" is a positional
    argument that may also be named."""
    r = virsh("test:///default", "help", command)
    if r.rc != 0:
        return None
    section = r.stdout.split("OPTIONS", 1)[1] if "OPTIONS" in r.stdout else ""
    options = {m.group(1) for m in re.finditer(r"^ {4}(--[\w-]+)", section, re.M)}
    named = {m.group(1) for m in re.finditer(r"^ {4}\[(--[\w-]+)\]", section, re.M)}
    return options, named


def _svirsh_options(host, command: str) -> set[str]:
    r = svirsh_direct(host.config, "test:///default", command, "--help")
    assert r.rc == 0, r
    return {m.group(1) for m in re.finditer(r"^ +(?:-\w, )?(--[\w-]+)", r.stdout, re.M)}


def test_help_option_names_are_virshs(host):
    from secured_virt.cli.commands import COMMANDS

    extra = INTENDED_DIFFERENCES["extra-options"][0]
    missing = INTENDED_DIFFERENCES["not-offered"][0]
    shared = 0
    for name, cmd in COMMANDS.items():
        found = _virsh_options(name)
        if found is None:
            continue  # svirsh's own command (labels, dry-run...)
        theirs, named = found
        shared += 1
        ours = _svirsh_options(host, name)
        allowed = theirs | named | extra["*"] | extra.get(name, set())
        if cmd.reads:
            allowed |= {"--json"}
        assert ours <= allowed, f"{name}: options virsh does not have: {sorted(ours - allowed)}"
        if name in READ_COMMANDS:
            lacking = theirs - ours - missing.get(name, set())
            assert not lacking, f"{name}: virsh options svirsh lacks: {sorted(lacking)}"
            stale = missing.get(name, set()) & ours
            assert not stale, f"{name}: now offered, drop from not-offered: {sorted(stale)}"
    assert shared >= 30


# -- one pass on real QEMU -------------------------------------------------------------------
def _rows(stdout: str, names) -> tuple[str, list[list[str]]]:
    """A virsh table's header words and the cells of the rows naming one of ``names``.

    Other guests may run on the shared qemu:///system (left by other tests or other users),
    and a user who sees only the test's guests gets columns only as wide as their names, so
    the header is compared by its words, not its padding (the exact layout is compared on the
    test driver, where both sides see the same VMs)."""
    lines = stdout.split("\n")
    rows = [re.split(r" {2,}", line.strip()) for line in lines[2:] if line.strip()]
    return lines[0].split(), [r for r in rows if len(r) > 1 and r[1] in names]


def _lines(stdout: str, names) -> list[str]:
    return [line for line in stdout.splitlines() if line.split(" ")[-1] in names]


@pytest.fixture
def qemu_guests(host):
    from secured_virt.backends.factory import open_backend
    from secured_virt.testing.libvirtd import ensure_libvirtd, tiny_guest_xml

    status = ensure_libvirtd()
    if not status.ok:
        pytest.skip(status.reason)
    tag = os.urandom(3).hex()
    names = (f"svdiff-{tag}-a", f"svdiff-{tag}-b")
    be = open_backend("libvirt", "qemu:///system")
    for vm in names:
        be.define(tiny_guest_xml(vm))
    be.start(names[0])
    try:
        yield names
    finally:
        for vm in names:
            try:
                if be.lookup(vm).id is not None:
                    be.destroy(vm)
                be.undefine(vm)
            except Exception:
                pass
        be.close()
        status.stop()


def test_real_qemu_as_root_and_as_a_user(host, qemu_guests, test_users, readable_src):
    """On qemu:///system: root in direct mode, and a user who may see (only) the test's two
    guests through an svirtd on that URI - the rows of the shared host's other guests aside."""
    uri = "qemu:///system"
    write_root_file(host.pa, pa_xml(bob_vms=qemu_guests))
    conf = host.config.read_text().replace(f"test://{host.node}", uri)
    write_root_file(host.config, conf)
    host.d.stop()
    host.d = host.daemon().start().wait_ready()
    bob = test_users["svt-bob"]
    runs = {
        "root": lambda *a: svirsh_direct(host.config, uri, *a),
        "svt-bob": lambda *a: svirsh_as(bob, readable_src, host.socket, *a),
    }
    for who, svirsh in runs.items():
        for vm in qemu_guests:
            for argv in (
                ["dominfo", vm],
                ["domstate", vm],
                ["domstate", vm, "--reason"],
                ["domid", vm],
                ["domuuid", vm],
                ["dumpxml", vm],
                ["dumpxml", vm, "--inactive"],
                ["snapshot-list", vm],
            ):
                assert_same([*argv, f"({who})"], virsh(uri, *argv), svirsh(*argv))
        for case in LIST_CASES:
            argv = ["list", *case]
            theirs, ours = virsh(uri, *argv), svirsh(*argv)
            assert ours.rc == theirs.rc or (theirs.rc, ours.rc) == (1, USAGE_EXIT[1]), argv
            if theirs.rc:
                continue
            if {"--name", "--uuid", "--id"} & set(case):
                if case == ["--id"] or case == ["--all", "--id"]:
                    continue  # ids alone name no VM to filter on
                assert _lines(ours.stdout, qemu_guests) == _lines(theirs.stdout, qemu_guests)
            else:
                assert _rows(ours.stdout, qemu_guests) == _rows(theirs.stdout, qemu_guests), argv
        for argv in (["dominfo", "no-such-vm"], ["start", qemu_guests[0]]):
            theirs, ours = virsh(uri, *argv), svirsh(*argv)
            rc = theirs.rc
            if who != "root" and "no-such-vm" in argv:  # svt-bob's grant is partial
                rc = INTENDED_DIFFERENCES["outside-the-grant"][0]
            assert (ours.rc, ours.stdout) == (rc, theirs.stdout), (who, theirs, ours)
