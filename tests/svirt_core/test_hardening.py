"""hardening.py: start-up hygiene, checked in fresh processes (it closes fds, scrubs env)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from secured_virt.hardening import SECURE_PATH, HardeningError, check_argv, scrubbed_env
from secured_virt.testing.asuid import setpriv_prefix

REPORT = (
    "import json, os, resource\n"
    "from secured_virt.hardening import harden_process\n"
    "harden_process(keep_fds={keep}, keep_env={keep_env})\n"
    "def is_open(fd):\n"
    "    try:\n"
    "        os.fstat(fd)\n"
    "        return True\n"
    "    except OSError:\n"
    "        return False\n"
    "fds = [fd for fd in range(1024) if is_open(fd)]\n"
    "um = os.umask(0); os.umask(um)\n"
    "print(json.dumps({{'env': dict(os.environ), 'fds': fds, 'umask': um,\n"
    "  'fd0': os.readlink('/proc/self/fd/0'),\n"
    "  'core': resource.getrlimit(resource.RLIMIT_CORE)}}))\n"
)

HOSTILE_ENV = {
    "PATH": "/tmp/evil:/usr/bin:/bin",
    "IFS": " ",
    "DISPLAY": ":0",
    "USER": "root",
    "HOME": "/tmp/evil",
    "PYTHONWARNINGS": "error",
    "BASH_ENV": "/tmp/evil.sh",
    "TERM": "xterm-256color",
    "LANG": "C.UTF-8",
    "LC_ALL": "../../../tmp/evil",
    "LC_TIME": "en_GB%n",
    "LANGUAGE": "() { :; }",
    "SUDO_UID": "1000",
    "SUDO_USER": "someone",
    "SUDO_COMMAND": "/bin/sh",
    "LISTEN_FDS": "1",
}


def run_report(argv_prefix, readable_src, *, keep=(), keep_env=(), env=HOSTILE_ENV, **popen):
    code = f"import sys; sys.path.insert(0, {str(readable_src)!r})\n" + REPORT.format(
        keep=tuple(keep), keep_env=tuple(keep_env)
    )
    res = subprocess.run(
        [*argv_prefix, sys.executable, "-I", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        **popen,
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_environment_is_scrubbed_for_root(readable_src):
    env = run_report([], readable_src)["env"]
    assert env == {
        "PATH": SECURE_PATH,
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "SUDO_UID": "1000",  # kept for identity.py, which checks them against passwd
        "SUDO_USER": "someone",
    }


def test_sudo_variables_dropped_for_non_root(readable_src, test_users):
    alice = test_users["svt-alice"]
    env = run_report(setpriv_prefix(alice), readable_src)["env"]
    assert "SUDO_UID" not in env and "SUDO_USER" not in env and env["PATH"] == SECURE_PATH


def test_keep_env_names_survive(readable_src):
    env = run_report([], readable_src, keep_env=("LISTEN_FDS",))["env"]
    assert env["LISTEN_FDS"] == "1"


def test_umask_fds_and_core_dumps(readable_src):
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    try:
        rep = run_report([], readable_src, keep=(w2,), pass_fds=(w1, w2))
    finally:
        for fd in (r1, w1, r2, w2):
            os.close(fd)
    assert rep["umask"] == 0o077
    assert w1 not in rep["fds"] and w2 in rep["fds"]
    assert rep["fds"] == [0, 1, 2, w2]
    assert rep["core"] == [0, 0]


def test_closed_stdin_is_reopened_on_dev_null(readable_src):
    rep = run_report(
        ["/bin/sh", "-c", 'exec "$@" <&-', "sh"], readable_src, env={"PATH": "/usr/bin:/bin"}
    )
    assert rep["fd0"] == "/dev/null"


@pytest.mark.parametrize("argv", [[], [""]])
def test_argc_zero_is_refused(argv):
    with pytest.raises(HardeningError, match="argc == 0"):
        check_argv(argv)
    assert check_argv(["/usr/bin/svirsh", "list"]) == "svirsh"


def test_scrubbed_env_for_subprocesses(monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "/tmp/evil.so")
    monkeypatch.setenv("TERM", "vt100")
    monkeypatch.setenv("LC_MESSAGES", "/etc/shadow")
    env = scrubbed_env({"XL_EXTRA": "1"})
    assert env["PATH"] == SECURE_PATH and env["TERM"] == "vt100" and env["XL_EXTRA"] == "1"
    assert "LD_PRELOAD" not in env and "LC_MESSAGES" not in env
