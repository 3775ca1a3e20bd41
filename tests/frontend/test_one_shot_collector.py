"""svirsh, a one-shot client, runs without the cyclic garbage collector (hardening.
one_shot_collector: its passes were ~5% of a run), and turns it back on for a console, a
session of unbounded length.  Each case runs in a child interpreter, so pytest's own
collector is never touched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-I", "-c", f"import gc, sys\nsys.path.insert(0, {str(REPO)!r})\n{code}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout + out.stderr


def test_a_one_shot_program_runs_with_the_collector_off_and_others_with_it_on():
    probe = (
        "from secured_virt.hardening import start_program\n"
        "start_program(lambda: print('collector', gc.isenabled()) or 0,\n"
        "              require_isolated=False, quick_exit={quick})\n"
    )
    assert "collector False" in _run(probe.format(quick=True))
    assert "collector True" in _run(probe.format(quick=False))  # svirtd, the admin tools


def test_a_console_through_svirtd_turns_the_collector_back_on():
    got = _run(
        "from secured_virt import client\n"
        "from secured_virt.cli import svirsh\n"
        "from secured_virt.hardening import start_program\n"
        "client.daemon_available = lambda path: True\n"
        "client.console = lambda *a, **k: print('console collector', gc.isenabled()) or 0\n"
        "start_program(lambda: svirsh.main(['--socket', '/nonexistent', 'console', 'vm1']),\n"
        "              require_isolated=False, quick_exit=True)\n"
    )
    assert "console collector True" in got, got


def test_other_requests_through_svirtd_keep_it_off():
    got = _run(
        "from secured_virt import client\n"
        "from secured_virt.cli import svirsh\n"
        "from secured_virt.hardening import start_program\n"
        "from secured_virt.requests import Reply\n"
        "client.daemon_available = lambda path: True\n"
        "def call(*a, **k):\n"
        "    print('request collector', gc.isenabled())\n"
        "    return Reply(0, {'state': 'running', 'reason': None})\n"
        "client.call = call\n"
        "start_program(lambda: svirsh.main(['--socket', '/nonexistent', 'domstate', 'vm1']),\n"
        "              require_isolated=False, quick_exit=True)\n"
    )
    assert "request collector False" in got, got
