"""What direct mode's start-up imports (issue 18): no urllib/http/email/ssl for XML escaping.

xml.sax.saxutils imports urllib.request, which pulls http.client, email and ssl: ~12 ms of
every root svirsh, spent on two string replacements in confinement.vmmeta.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .test_svirsh_cli import conf_file

REPO = Path(__file__).resolve().parents[2]
NETWORK_STACK = ("xml.sax.saxutils", "urllib.request", "http.client", "email.parser", "ssl")


@pytest.mark.parametrize(
    "module", ["secured_virt.confinement.vmmeta", "secured_virt.backends.libvirt_backend"]
)
def test_module_does_not_load_the_network_stack(module):
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r}); import {module}; "
        f"print([m for m in {NETWORK_STACK!r} if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"


#: what plain root's list/dominfo/domstate need not load (issue 18: ~100 ms of ~200): the role
#: files' engine, XSD and loader (root is decided without UA/PA), PAM through ctypes (no
#: password is asked), the sHype policy package behind the sVirt categories (nothing starts),
#: and the network stack xml.sax.saxutils drags in
NOT_FOR_A_READ = (
    "rbac.engine",
    "rbac.loader",
    "rbac.builder",
    "ctypes",
    "secured_virt.access.pamauth",
    "secured_virt.shype.categories",
    "policy",
    *NETWORK_STACK,
)

#: what root's direct list/dominfo/domstate load nowhere on their path, each only where it is
#: used (issue 18: ~8 ms of each start): logging (with traceback) until something is logged,
#: socket until a peer is read (svirtd), secrets (hmac, random) until a file is replaced, and
#: the device allow-list, disk fence, qcow2 reader, image sharing and DAC labels (but dominfo's),
#: which no read passes through
NOT_ON_THE_READ_PATH = (
    "logging",
    "traceback",
    "socket",
    "secrets",
    "hmac",
    "random",
    "secured_virt.confinement.devices",
    "secured_virt.confinement.disks",
    "secured_virt.confinement.qcow2",
    "secured_virt.confinement.sharing",
    "secured_virt.confinement.dac",
)

#: prints the command's output, then the modules of NOT_FOR_A_READ it loaded (main() runs
#: in this process, as bin/svirsh would run it, so sys.modules is what the command loaded)
PROBE = """
import sys
sys.path.insert(0, {repo!r})
import site
site.main()
from secured_virt.cli.svirsh import main
status = main({argv!r})
sys.stdout.flush()
print("LOADED", [m for m in {heavy!r} if m in sys.modules], status)
"""


def run_probe(code: str, marker: str) -> tuple[str, str, str]:
    """``code`` in ``python3 -I -S`` as root's svirsh runs (a bare environment, cwd /): its
    output before the last ``marker``, what follows that marker, and its stderr."""
    r = subprocess.run(
        ["/usr/bin/python3", "-I", "-S", "-c", code],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        cwd="/",
        timeout=120,
    )
    out, _, tail = r.stdout.rpartition(marker)
    assert tail, r.stderr
    return out, tail.strip(), r.stderr


def _direct(conf, *argv, heavy=NOT_FOR_A_READ):
    code = PROBE.format(repo=str(REPO), argv=["--config", str(conf), *argv], heavy=heavy)
    return run_probe(code, "LOADED ")


@pytest.mark.parametrize(
    "argv", [("list", "--all"), ("dominfo", "alice-web"), ("domstate", "alice-web")]
)
def test_roots_read_commands_load_no_rbac_pam_policy_or_network_code(conf, svt_env, argv):
    """Root's direct mode stays a whole decision: identity from the kernel, the gate's
    verdict (ROOT_RULE) and its audit record, written before the answer."""
    audit = Path(svt_env.audit_log)
    before = len(audit.read_text().splitlines()) if audit.exists() else 0
    out, tail, err = _direct(conf, *argv)
    assert tail == "[] 0", err
    assert "alice-web" in out or "running" in out or "shut off" in out
    records = [json.loads(x) for x in audit.read_text().splitlines()[before:]]
    decisions = [r for r in records if r.get("op") == argv[0]]
    assert decisions and decisions[0]["user"] == "root", records
    assert "uid 0 (root)" in json.dumps(decisions[0])


@pytest.mark.parametrize(
    "argv", [("list", "--all"), ("dominfo", "alice-web"), ("domstate", "alice-web")]
)
def test_roots_read_commands_load_only_what_they_use(conf, svt_env, argv):
    """The modules a read never calls are not imported for it (each module imports them where
    they are used); the answer and its exit status are unchanged."""
    heavy = NOT_ON_THE_READ_PATH
    if argv[0] == "dominfo":  # shows the DAC label QEMU runs as (sVirt on): dac reads it
        heavy = tuple(m for m in heavy if m != "secured_virt.confinement.dac")
    out, tail, err = _direct(conf, *argv, heavy=heavy)
    assert tail == "[] 0", err
    assert "alice-web" in out or "running" in out or "shut off" in out


def test_root_acting_as_a_user_still_loads_and_applies_the_role_files(conf, svt_env):
    """--as: the deferred role files load at the first decision and decide it (svt-alice
    holds no roles in the demo policy: refused, exit 3)."""
    _, tail, err = _direct(conf, "--as", "svt-alice", "domstate", "alice-web")
    loaded, status = tail.rsplit(" ", 1)
    assert status == "3", err
    assert "rbac.engine" in loaded and "denied" in err


def test_broken_role_files_still_refuse_whoever_they_would_decide(conf, svt_env):
    """Deferred is not skipped: with a PA that does not load, root acting as a user is
    refused as before (exit 4: no valid policy), though root itself needs no role file."""
    Path(svt_env.pa).write_text("<RolePolicyDefinition><oops></RolePolicyDefinition>")
    _, tail, err = _direct(conf, "domstate", "alice-web")
    assert tail.endswith(" 0"), err
    _, tail, err = _direct(conf, "--as", "svt-alice", "domstate", "alice-web")
    assert tail.endswith(" 4"), err
    assert "no valid UA/PA policy" in err


@pytest.fixture
def conf(svt_env, tmp_path):
    return conf_file(svt_env, tmp_path)
