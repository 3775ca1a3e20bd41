"""Running virsh and svirsh side by side, and the few normalisations every comparison needs.

virsh is Debian's /usr/bin/virsh (libvirt-clients).  svirsh runs from the tree under test
(never whichever tree the venv's editable install points at): as root in direct mode, or as a
real other uid (setpriv) through a real svirtd, from the world-readable snapshot of the tree.

libvirt's test driver keeps its state in the connection, so a read is compared on a fresh
node each side, and a sequence of state-changing commands runs twice on two fresh copies:
once through svirtd (which holds one connection, like a host), once in a single virsh process
(one connection), cut into per-command pieces with ``echo`` markers.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from svtd_helpers import setpriv_prefix  # tests/daemon: on sys.path through conftest.py

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
VIRSH = "/usr/bin/virsh"
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C", "LC_ALL": "C", "TZ": "UTC"}


@dataclass(frozen=True)
class Out:
    """What a script sees of one command: exit status, stdout, stderr."""

    rc: int
    stdout: str
    stderr: str


def _main_argv(tree: Path) -> list[str]:
    return [
        PY,
        "-I",
        "-c",
        f"import sys; sys.path.insert(0, {str(tree)!r}); "
        "from secured_virt.cli.svirsh import main; sys.exit(main(sys.argv[1:]))",
    ]


def _run(argv: list[str], user=None, timeout: float = 120) -> Out:
    r = subprocess.run(
        setpriv_prefix(user) + argv,
        env=ENV,
        stdin=subprocess.DEVNULL,  # virsh's job watcher would wait on an open stdin
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd="/",
    )
    return Out(r.returncode, r.stdout, r.stderr)


def virsh(uri: str, *argv: str) -> Out:
    """virsh on ``uri``.  virsh 9.0's ``save`` now and then never returns on the test driver
    (about one run in ten here, with the image already written: its job watcher misses the
    end of the job), so a run that hangs is retried on a fresh copy of the node file - virsh's
    flake, not something svirsh is compared on."""
    for _attempt in range(4):
        try:
            return _run([VIRSH, "-c", _fresh(uri), *argv], timeout=20)
        except subprocess.TimeoutExpired:
            continue
    raise AssertionError(f"virsh {' '.join(argv)} hung four times on {uri}")


def _fresh(uri: str) -> str:
    """A test-driver URI on an untouched copy of its node file (others: unchanged)."""
    if not uri.startswith("test:///") or uri == "test:///default":
        return uri
    src = Path(uri[len("test://") :])
    dest = src.with_name(f"{src.stem}.{os.getpid()}.{next(_COUNTER)}{src.suffix}")
    dest.write_bytes(src.read_bytes())
    return f"test://{dest}"


_COUNTER = itertools.count()


def svirsh_direct(config: Path, uri: str, *argv: str) -> Out:
    """svirsh as root, in-process ("direct mode"), on ``uri``."""
    return _run([*_main_argv(REPO), "--config", str(config), "--connect", uri, *argv])


def svirsh_as(user, src: Path, socket: str, *argv: str) -> Out:
    """svirsh as a real non-root uid, through svirtd on ``socket``."""
    return _run([*_main_argv(src), "--socket", socket, *argv], user=user)


def virsh_sequence(uri: str, steps: list[list[str]]) -> list[Out]:
    """Run ``steps`` in one virsh process (one connection: the test driver's state carries
    over) and cut its output into one Out per step.

    After each step virsh runs ``echo --err @@N`` (a marker on stderr, and virsh's blank line on
    stdout) and ``echo @@N`` (a marker on stdout, no blank line).  A step failed - exit status
    1 on its own - when virsh printed an error for it."""
    script = []
    for i, step in enumerate(steps):
        script.append(" ".join(shlex.quote(a) for a in step))
        script.append(f"echo --err @@{i}")
        script.append(f"echo @@{i}")
    r = _run([VIRSH, "-c", uri, " ; ".join(script)])
    outs, out_rest, err_rest = [], r.stdout, r.stderr
    for i in range(len(steps)):
        out, sep, out_rest = out_rest.partition(f"@@{i}\n")
        err, sep2, err_rest = err_rest.partition(f"error: @@{i}\n")
        assert sep and sep2, f"virsh did not reach step {i} ({steps[i]}):\n{r.stdout}\n{r.stderr}"
        assert out.endswith("\n"), out
        out = out[:-1]  # the blank line of the `echo --err` marker itself
        outs.append(Out(1 if "error:" in err else 0, out, err))
    return outs


# -- normalisation: values that move between two runs of the *same* program ---------------
_CPU_TIME = re.compile(r"^(CPU time:\s+)\d+\.\ds$", re.M)
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}")


def mask_volatile(text: str) -> str:
    """Mask what changes from one second to the next whoever prints it: the CPU time (the
    test driver reports the wall clock as a domain's CPU time; QEMU's counter runs) and
    snapshot creation times (two fresh copies take their snapshots moments apart)."""
    return _TIMESTAMP.sub("<time>", _CPU_TIME.sub(r"\1<n>s", text))


def node_copy(src: Path, dest_dir: Path, keep: tuple[str, ...] | None = None) -> Path:
    """A copy of a test-driver node file, optionally with only the domains named in ``keep``
    (in the file's order, so running domains keep their ids when ``keep`` is a prefix)."""
    from lxml import etree

    tree = etree.parse(str(src), etree.XMLParser(resolve_entities=False, no_network=True))
    if keep is not None:
        for dom in tree.getroot().findall("domain"):
            if dom.findtext("name") not in keep:
                dom.getparent().remove(dom)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / ("node.xml" if keep is None else f"node-{'-'.join(keep)}.xml")
    tree.write(str(dest))
    os.chmod(dest, 0o644)
    return dest
