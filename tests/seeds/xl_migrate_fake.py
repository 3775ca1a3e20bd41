"""A stand-in for one host's ``xl`` *process* (there is no Xen here), for the migration tests.

svirt-xl-receive is a real process on the destination, so its xl must be a program too; this
one answers like tests/backends/xlfake.py, from the recorded outputs, with the host's state
(the running set ``{name: domid}`` and the paused names) in a JSON file that the test's
in-process mock of the same host reads and writes as well, through ``answer`` and
``load``/``save`` here.  A listing renders the recorded row of each running domid under the
name it runs as *now* (xl_info.c list_domains; libxl_retrieve_domain_configuration puts the
current name into ``list -l``), so a renamed domain lists as such.

``migrate-receive`` is xl's receiving side as in Xen's tools/xl (xl_migrate.c
``migrate_receive``, xl_vmcontrol.c ``create_domain``, libxl_create.c
``domcreate_complete``), step by step:

1. stderr "Ready to receive domain.", the banner on stdout;
2. the xl header and config (a save image's head) from stdin; the domain the config names
   (NAME) is created, paused, as ``NAME--incoming`` (libxl refuses a name that is taken: names
   are unique); a truncated header fails before anything is created;
3. libxl's stream (libxl_sr_stream_format.h: the big-endian header ``LibxlFmt`` v2, then
   8-aligned records up to REC_TYPE_END; the memory is one opaque record here, the source
   builds it with ``libxl_stream``) to its END record.  If it ends early, libxl destroys the
   half-built domain and xl exits 1 ("Domain creation failed"): nothing is left;
4. the ready message; xl exits 1 at once if it cannot be written, leaving ``NAME--incoming``;
5. the source's permission to go.  With it: rename ``NAME--incoming`` to NAME (refused if NAME
   is taken), unpause.  Without it (EOF, garbage) or with the rename refused: failure;
6. the report and one status byte.  If they cannot be written (the source is gone) xl exits 1
   *as it is*: after a missing GO that leaves ``NAME--incoming`` paused here.  Otherwise, on
   failure, xl destroys its copy, sends the source its permission to resume and exits **0**.

``fail`` in the state (a list of subcommands) makes those fail as when libxl cannot list the
domains (``failing``).  Every call is logged in STATE.calls.

Usage: xl_migrate_fake.py STATE ARGS...
"""

from __future__ import annotations

import json
import os
import struct
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backends"))
from xlfake import FakeXl, data

from secured_virt.backends.xl_parse import read_save_header

# tools/xl/xl.h: the banner is sent without its NUL, the others with it (sizeof)
BANNER = b"xl migration receiver ready, send binary domain data.\n"
READY = b"domain received, ready to unpause\x00"
GO = b"domain is yours, you are cleared to unpause\x00"
REPORT = b"my copy unpause results are as follows\x00"
#: xl_vmcontrol.c create_domain: the name a domain is received under
INCOMING = "--incoming"
# libxl_sr_stream_format.h
SR_IDENT, SR_VERSION = 0x4C6962786C466D74, 2
REC_END, REC_LIBXC_CONTEXT = 0, 1
# libxl_types.idl: ERROR_FAIL, ERROR_INVAL
ERROR_FAIL, ERROR_INVAL = -3, -6

_LIST_ROWS = data("list.txt").splitlines()
LIST_HEADER = _LIST_ROWS[0] + "\n"
RECORDED_ROWS = {int(ln.split()[1]): ln.split() for ln in _LIST_ROWS[1:]}
RECORDED_IDS = {row[0]: domid for domid, row in RECORDED_ROWS.items()}
RECORDED_LONG = {e["domid"]: e for e in json.loads(data("list-l.json"))}


# -- the host's state ---------------------------------------------------------------------
def load(state_path: Path) -> dict:
    state = json.loads(state_path.read_text())
    state.setdefault("paused", [])
    return state


def save(state_path: Path, state: dict) -> None:
    """Atomically: the other side of the state file may be reading it right now."""
    fd, tmp = tempfile.mkstemp(dir=state_path.parent, prefix=".state.")
    with os.fdopen(fd, "w") as fh:
        json.dump(state, fh)
    os.replace(tmp, state_path)


def _row(name: str, domid: int, paused: bool) -> str:
    _n, _id, mem, vcpus, flags, secs = RECORDED_ROWS[domid]
    if paused:
        flags = "--p---"
    return f"{name:<40} {domid:5d} {int(mem):5d} {int(vcpus):5d}     {flags}  {float(secs):8.1f}\n"


def _long(name: str, domid: int) -> dict:
    entry = json.loads(json.dumps(RECORDED_LONG[domid]))
    entry["config"].setdefault("c_info", {})["name"] = name
    return entry


#: libxl_domain.c libxl_list_domain, when the hypervisor does not answer
LIST_FAILED = (
    "libxl: error: libxl_domain.c:337:libxl_list_domain: getting domain info list: "
    "Resource temporarily unavailable\n"
)


def failing(state: dict, args: list[str]) -> tuple[int, str, str] | None:
    """xl's answer to ARGS when ``state["fail"]`` names its subcommand: libxl cannot list the
    domains.  ``xl list`` says so (xl_info.c: "libxl_list_domain failed."); ``xl domid``
    (xl_info.c main_domid, libxl_name_to_domid) says the same as for a name that is not
    running, "maybe this domain does not exist"."""
    if not args or args[0] not in state.get("fail", ()):
        return None
    if args[0] == "domid":
        return (
            1,
            "",
            LIST_FAILED
            + (f"Can't get domid of domain name '{args[-1]}', maybe this domain does not exist.\n"),
        )
    return 1, "", LIST_FAILED + "libxl_list_domain failed.\n"


def answer(state: dict, args: list[str]) -> tuple[int, str, str]:
    """xl's answer to ARGS on a host in ``state`` (listings by the names domains run as now;
    ``state["fail"]``, a list of subcommands, makes those fail as in ``failing``)."""
    running, paused = state["running"], set(state.get("paused", ()))
    key = tuple(args)
    failed = failing(state, args)
    if failed is not None:
        return failed
    listing = key[:2] == ("list", "--") or key[:3] == ("list", "-l", "--")
    if key in (("list",), ("list", "-l")) or listing:
        long = key[1:2] == ("-l",)
        names = list(running) if key[-1] in ("list", "-l") else [key[-1]]
        if len(names) == 1 and names[0] not in running:
            return 1, "", f"{names[0]} is an invalid domain identifier (rc=-6)\n"
        if long:
            return 0, json.dumps([_long(n, running[n]) for n in names], indent=4) + "\n", ""
        return 0, LIST_HEADER + "".join(_row(n, running[n], n in paused) for n in names), ""
    if key[:2] == ("domid", "--") and len(key) == 3:
        if key[2] in running:
            return 0, f"{running[key[2]]}\n", ""
        return (
            1,
            "",
            f"Can't get domid of domain name '{key[2]}', maybe this domain does not exist.\n",
        )
    fake = FakeXl()
    fake.running = dict(running)
    r = fake(["xl", *args])
    return r.returncode, r.stdout, r.stderr


# -- the stream ---------------------------------------------------------------------------
def libxl_stream(memory: bytes) -> bytes:
    """What the source's libxl_domain_suspend sends after xl's header: the stream header, the
    memory as one record (8-aligned), the END record."""
    pad = b"\x00" * (-len(memory) % 8)
    return (
        struct.pack(">QII", SR_IDENT, SR_VERSION, 0)
        + struct.pack("<II", REC_LIBXC_CONTEXT, len(memory))
        + memory
        + pad
        + struct.pack("<II", REC_END, 0)
    )


class Truncated(Exception):
    pass


def _read(fh, n: int, what: str) -> bytes:
    got = fh.read(n)
    if len(got) < n:
        raise Truncated(what)
    return got


def _read_libxl_stream(fh) -> None:
    ident, version, _options = struct.unpack(">QII", _read(fh, 16, "stream header"))
    if ident != SR_IDENT or version != SR_VERSION:
        raise Truncated("stream header (bad ident or version)")
    while True:
        rtype, length = struct.unpack("<II", _read(fh, 8, "record header"))
        _read(fh, length + (-length % 8), "record body")
        if rtype == REC_END:
            return


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _write(out, data: bytes) -> bool:
    try:
        out.write(data)
        out.flush()
        return True
    except BrokenPipeError:  # xl ignores SIGPIPE: a write to a closed pipe is an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())  # exit quietly, status 1
        return False


def receive(state_path: Path) -> int:
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    _say("migration target: Ready to receive domain.")
    if not _write(out, BANNER):
        return 1
    # create_domain: xl's header and config, then the domain under its incoming name
    try:
        head = _read(inp, 48, "header")
        (optlen,) = struct.unpack("<I", head[44:48])
        opt = _read(inp, optlen, "optional data")
    except Truncated as exc:
        _say(
            "libxl: error: libxl_utils.c:107:libxl_read_exactly: file/stream truncated "
            f"reading {exc} from <incoming migration stream>"
        )
        _say(f"migration target: Domain creation failed (code {ERROR_FAIL}).")
        return 1
    with tempfile.NamedTemporaryFile(suffix=".head") as fh:
        fh.write(head + opt)
        fh.flush()
        name = read_save_header(fh.name).domain_name()
    incoming = name + INCOMING
    state = load(state_path)
    if incoming in state["running"]:
        _say(f'libxl: error: Domain with name "{incoming}" already exists.')
        _say(f"migration target: Domain creation failed (code {ERROR_INVAL}).")
        return 1
    state["running"][incoming] = RECORDED_IDS[name]
    state["paused"].append(incoming)
    save(state_path, state)
    try:
        _read_libxl_stream(inp)
    except Truncated as exc:  # domcreate_complete: not retained, destroyed
        state = load(state_path)
        state["running"].pop(incoming, None)
        state["paused"] = [n for n in state["paused"] if n != incoming]
        save(state_path, state)
        _say(f"libxl: error: restore stream truncated reading {exc}")
        _say(f"migration target: Domain creation failed (code {ERROR_FAIL}).")
        return 1
    # migrate_receive
    _say("migration target: Transfer complete, requesting permission to start domain.")
    if not _write(out, READY):
        return 1  # xl_migrate.c: exit(EXIT_FAILURE), the domain stays as it is
    rc = 0 if inp.read(len(GO)) == GO else ERROR_FAIL
    state = load(state_path)
    if rc == 0:
        _say("migration target: Got permission, starting domain.")
        if name in state["running"]:  # libxl__domain_rename: names are unique
            _say(f'libxl: error: Domain with name "{name}" already exists.')
            rc = ERROR_INVAL
        else:
            state["running"][name] = state["running"].pop(incoming)
            state["paused"] = [n for n in state["paused"] if n != incoming]
            save(state_path, state)
            _say("migration target: Domain started successsfully.")
    if not (_write(out, REPORT) and _write(out, bytes([-rc & 0xFF]))):
        return 1  # the source is gone: exit(EXIT_FAILURE) without destroying anything
    if rc:
        _say("migration target: Failure, destroying our copy.")
        state = load(state_path)
        state["running"].pop(incoming, None)
        state["paused"] = [n for n in state["paused"] if n != incoming]
        save(state_path, state)
        _say("migration target: Cleanup OK, granting sender permission to resume.")
        if not _write(out, GO):
            return 1
    return 0


def main() -> int:
    state_path = Path(sys.argv[1])
    args = sys.argv[2:]
    with open(state_path.with_suffix(".calls"), "a") as log:  # one line per call
        log.write(json.dumps(args) + "\n")
    if args == ["migrate-receive"]:
        return receive(state_path)
    rc, out, err = answer(load(state_path), args)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return rc


if __name__ == "__main__":
    sys.exit(main())
