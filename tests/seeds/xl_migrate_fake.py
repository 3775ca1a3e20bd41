"""A stand-in for one host's ``xl`` *process* (there is no Xen here), for the migration tests.

svirt-xl-receive is a real process on the destination, so its xl must be a program too; this
one answers like tests/backends/xlfake.py, from the recorded outputs, with the host's running
set in a JSON state file that the test's in-process mock of the same host reads and writes as
well.  ``migrate-receive`` speaks the first part of xl's protocol (tools/xl/xl_migrate.c): the
banner, the stream (a save image: header, config, memory) to its end, then the ready message;
the domain the stream's config names is then running.  Every call is logged in STATE.calls.

Usage: xl_migrate_fake.py STATE ARGS...
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backends"))
from xlfake import FakeXl, data

from secured_virt.backends.xl_parse import read_save_header

BANNER = b"xl migration receiver ready, send binary domain data.\n"
READY = b"domain received, ready to unpause\x00"
RECORDED_IDS = {ln.split()[0]: int(ln.split()[1]) for ln in data("list.txt").splitlines()[1:]}


def answer(running: dict, args: list[str]) -> tuple[int, str, str]:
    """xl's answer to ARGS on a host running ``running`` (as tests/seeds/xlhosts.HostXl)."""
    key = tuple(args)
    if key == ("list",):
        lines = data("list.txt").splitlines(keepends=True)
        keep = [ln for ln in lines[1:] if ln.split()[0] in running]
        return 0, "".join(lines[:1] + keep), ""
    if key == ("list", "-l"):
        ids = set(running.values())
        return 0, json.dumps([e for e in json.loads(data("list-l.json")) if e["domid"] in ids]), ""
    fake = FakeXl()
    fake.running = dict(running)
    r = fake(["xl", *args])
    return r.returncode, r.stdout, r.stderr


def receive(state_path: Path) -> int:
    out = sys.stdout.buffer
    out.write(BANNER)
    out.flush()
    stream = sys.stdin.buffer.read()
    with tempfile.NamedTemporaryFile(suffix=".stream") as fh:
        fh.write(stream)
        fh.flush()
        name = read_save_header(fh.name).domain_name()
    state = json.loads(state_path.read_text())  # re-read: listings ran meanwhile
    state["running"][name] = RECORDED_IDS[name]
    state_path.write_text(json.dumps(state))
    out.write(READY)
    out.flush()
    return 0


def main() -> int:
    state_path = Path(sys.argv[1])
    args = sys.argv[2:]
    with open(state_path.with_suffix(".calls"), "a") as log:  # one line per call
        log.write(json.dumps(args) + "\n")
    if args == ["migrate-receive"]:
        return receive(state_path)
    rc, out, err = answer(json.loads(state_path.read_text())["running"], args)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return rc


if __name__ == "__main__":
    sys.exit(main())
