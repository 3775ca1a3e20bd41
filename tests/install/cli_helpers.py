"""Running the real svirsh and svirt-admin of the tree under test, as root (direct mode) and as
real other uids through a real svirtd (tests/daemon/svtd_helpers.RealEnv), for the exit-code
table and the friction tests of issue 19.

svirsh as another uid runs from the world-readable snapshot of the tree (``readable_src``):
the work tree may sit under a directory they cannot enter."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
for p in (str(REPO / "tests" / "daemon"), str(REPO)):
    if p not in sys.path:
        sys.path.insert(0, p)

from svtd_helpers import PY, RealEnv, write_root_file  # noqa: E402

__all__ = ["PY", "REPO", "RealEnv", "Run", "admin", "svirsh", "write_root_file"]

ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


@dataclass(frozen=True)
class Run:
    rc: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"rc={self.rc}\n--- stdout:\n{self.stdout}--- stderr:\n{self.stderr}"


def _main(tree: Path, module: str) -> list[str]:
    return [
        PY,
        "-I",
        "-c",
        f"import sys; sys.path.insert(0, {str(tree)!r}); "
        f"from {module} import main; sys.exit(main(sys.argv[1:]))",
    ]


def _setpriv(uid: int, gid: int) -> list[str]:
    return ["/usr/bin/setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]


def _run(argv: list[str], input: str | None = None, env: dict | None = None) -> Run:
    r = subprocess.run(
        argv,
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        env={**ENV, **(env or {})},
        cwd="/",
        timeout=120,
    )
    return Run(r.returncode, r.stdout, r.stderr)


def svirsh(env: RealEnv, who, *argv: str, src: Path | None = None, raw: bool = False) -> Run:
    """svirsh as ``who``: None = root in direct mode (``--config``), a passwd entry = that
    user through svirtd (``--socket``), an int = a uid with no passwd entry.  ``raw``: no
    --config/--socket added (the test gives its own global options)."""
    if who is None:
        pre, tree, glob = [], REPO, ["--config", str(env.config)]
    else:
        uid, gid = (who, who) if isinstance(who, int) else (who.pw_uid, who.pw_gid)
        pre, tree, glob = _setpriv(uid, gid), src or REPO, ["--socket", env.socket]
    return _run(pre + _main(tree, "secured_virt.cli.svirsh") + ([] if raw else glob) + list(argv))


def admin(env: RealEnv, *argv: str, input: str | None = None, extra_env=None) -> Run:
    """svirt-admin as root with ``--config`` of ``env``."""
    return _run(
        [*_main(REPO, "secured_virt.cli.admin"), "--config", str(env.config), *argv],
        input=input,
        env=extra_env,
    )
