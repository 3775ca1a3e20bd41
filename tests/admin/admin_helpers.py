"""Helpers for svirt-admin's editing tools: a private host configuration with real files.

``admin_env`` gives a directory with root-owned copies of the demo UA/PA (0644), a private
audit log directory, and a root-owned, non-writable configuration file naming them — the same
trust the real /etc/secured-virt files need.  ``env.run(...)`` runs the real ``svirt-admin``
in a fresh process (stdin, exit code and output as root would see them); editors are small
root-owned shell scripts written with ``env.editor(...)``.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "etc" / "demo"
PY = sys.executable


def child_env(extra: dict | None = None) -> dict:
    """A minimal environment for the programs under test, importing THIS work tree (the venv's
    editable install may point at another checkout)."""
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": str(REPO)}
    env.update(extra or {})
    return env


def write_root_file(path: Path, data: str | bytes, mode: int = 0o644) -> Path:
    """Write ``path`` as root:root with ``mode`` (the trust policy files need)."""
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    os.chown(path, 0, 0)
    os.chmod(path, mode)
    return path


@dataclass
class AdminEnv:
    base: Path
    etc: Path
    ua: Path
    pa: Path
    audit_log: Path
    socket: Path
    config: Path = field(init=False)
    settings: dict = field(default_factory=dict)

    def write_config(self, **overrides) -> Path:
        """(Re)write the config file: ua, pa, editor, allow_env_editor, socket, audit_log..."""
        self.settings.update({k: str(v) for k, v in overrides.items()})
        text = "[secured-virt]\n" + "".join(f"{k} = {v}\n" for k, v in self.settings.items())
        self.config = write_root_file(self.etc / "secured-virt.conf", text)
        return self.config

    def backup(self, which: str) -> Path:
        """Where install keeps the previous UA ('ua') or PA ('pa'): the root-only state
        directory, never beside the policy files."""
        from secured_virt.rolefiles.install import backup_path

        state = self.settings.get("rolefile_state_dir", "/var/lib/secured-virt/rolefiles")
        return Path(backup_path(str(getattr(self, which)), state))

    def editor(self, name: str, body: str, mode: int = 0o755) -> Path:
        """A root-owned editor script; svirt-admin calls it as ``SCRIPT -- FILE``."""
        script = (
            "#!/bin/sh\n"
            '[ "$1" = "--" ] || { echo "editor: expected -- before the file" >&2; exit 9; }\n'
            'f="$2"\n' + body + "\n"
        )
        return write_root_file(self.base / name, script, mode)

    def copy_editor(self, name: str, content: str | bytes) -> Path:
        """An editor that replaces the file with ``content`` (kept next to the script)."""
        src = write_root_file(self.base / f"{name}.content", content)
        return self.editor(name, f'cat "{src}" > "$f"')

    def run(
        self, *args: str, input: str = "", env: dict | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        """Run ``svirt-admin --config CONFIG ARGS...`` as root in a fresh process (under a
        simulated sudo, ``env`` with SUDO_UID: CONFIG as the host's configuration instead,
        since a sudo caller may not pass --config)."""
        base_env = child_env(env)
        return subprocess.run(
            self.argv(*args, sudo="SUDO_UID" in (env or {})),
            input=input,
            capture_output=True,
            text=True,
            env=base_env,
            timeout=timeout,
            cwd="/",
        )

    def argv(self, *args: str, sudo: bool = False) -> list[str]:
        if args[:1] == ("edit",) and "--no-tty" not in args and "--tty" not in args:
            # the editors here are scripts, run without a terminal (svirt-admin edit refuses
            # that unless told); "--tty" (dropped) asks for the refusal's own tests
            args = (*args, "--no-tty")
        args = tuple(a for a in args if a != "--tty")
        if sudo:  # --config is root's alone: CONFIG stands in for /etc/secured-virt's file
            code = (
                "import sys, secured_virt.config as c; c.CONFIG_PATH = sys.argv.pop(1); "
                "from secured_virt.cli.admin import main; sys.exit(main(sys.argv[1:]))"
            )
            return [PY, "-c", code, str(self.config), *args]
        return [PY, "-m", "secured_virt.cli.admin", "--config", str(self.config), *args]

    def stale_temps(self) -> list[str]:
        return sorted(n for n in os.listdir(self.etc) if ".tmp-" in n)

    def audit_records(self) -> list[dict]:
        import json

        if not self.audit_log.exists():
            return []
        return [json.loads(line) for line in self.audit_log.read_text().splitlines()]


def mode_of(path: Path) -> tuple[int, int, int]:
    """(uid, gid, permission bits) of ``path``."""
    st = os.stat(path)
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)
