"""Direct mode opens the hypervisor connection while it imports the service (issue 18).

The connection is the same one the service would open at its first use (the configured
backend and URI, through ``open_backend``), only opened in a thread during the ~25 ms of
imports; these tests hold that it is used, that it is the only one, that a failure to open
it early changes nothing a user sees, and that only a local URI is opened that way.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from secured_virt.cli.direct import _local_uri

from .conftest import write_root_file
from .test_direct_startup import run_probe
from .test_svirsh_cli import conf_file

REPO = Path(__file__).resolve().parents[2]

#: runs main() as bin/svirsh would, with open_backend wrapped to record which thread called it
#: (the real function runs: nothing is faked), then prints those thread names
PROBE = """
import sys, threading
sys.path.insert(0, {repo!r})
import site
site.main()
from secured_virt.backends import factory
real, calls = factory.open_backend, []
def spy(*a, **kw):
    calls.append(threading.current_thread().name)
    return real(*a, **kw)
factory.open_backend = spy
from secured_virt.cli.svirsh import main
status = main({argv!r})
sys.stdout.flush()
print("OPENED", calls, status)
"""


def _direct(conf, *argv):
    code = PROBE.format(repo=str(REPO), argv=["--config", str(conf), *argv])
    out, tail, err = run_probe(code, "OPENED ")
    calls, status = tail.rsplit(" ", 1)
    return out, calls, int(status), err


@pytest.mark.parametrize(
    "argv", [("list", "--all"), ("dominfo", "alice-web"), ("domstate", "alice-web")]
)
def test_the_request_runs_on_the_connection_opened_during_the_imports(conf, svt_env, argv):
    """One connection, opened by the early thread, and the answer and its audit as before."""
    audit = Path(svt_env.audit_log)
    before = len(audit.read_text().splitlines()) if audit.exists() else 0
    out, calls, status, err = _direct(conf, *argv)
    assert status == 0, err
    assert calls == "['svirsh-connect']"
    assert "alice-web" in out or "running" in out or "shut off" in out
    records = [json.loads(x) for x in audit.read_text().splitlines()[before:]]
    assert [r for r in records if r.get("op") == argv[0] and r.get("user") == "root"], records


def test_root_acting_as_a_user_opens_nothing_early(conf, svt_env):
    """--as: the request may be refused before it needs the hypervisor (svt-alice holds no
    roles in the demo policy: exit 3), so no connection is opened ahead of it."""
    _, calls, status, err = _direct(conf, "--as", "svt-alice", "domstate", "alice-web")
    assert status == 3, err
    assert "svirsh-connect" not in calls


def test_a_failed_early_open_is_reported_by_the_service_as_before(svt_env, tmp_path):
    """A node file that is not there: the early open fails quietly, the service's own open
    at its first use fails the same way and says so once (exit 1, nothing listed)."""
    missing = tmp_path / "no-such-node.xml"
    text = conf_file(svt_env, tmp_path).read_text()
    text = text.replace(f"uri = {svt_env.uri}\n", f"uri = test://{missing}\n")
    conf = write_root_file(tmp_path / "missing-node.conf", text)
    out, calls, status, err = _direct(conf, "list", "--all")
    assert status == 1, err
    assert calls == "['svirsh-connect', 'MainThread']"
    assert err.count(f"the test driver node file {missing} does not exist") == 1, err
    assert "vm-" not in out and "alice-web" not in out


@pytest.mark.parametrize(
    ("uri", "local"),
    [
        ("test:///default", True),
        ("test:///etc/secured-virt/node.xml", True),
        ("qemu:///system", True),
        ("qemu:///session", True),
        ("qemu+ssh://host/system", False),  # may ask for a password, reaches another host
        ("qemu+ssh:///system", False),  # a transport, even without a host
        ("qemu+ext:///system?command=/bin/x", False),  # runs a command
        ("qemu+unix:///system?socket=/tmp/s", False),
        ("qemu://host/system", False),  # tls to another host
        ("test:///default?x=1", False),
        ("qemu:system", False),
        ("", False),
    ],
)
def test_only_a_local_uri_is_opened_early(uri, local):
    """Opening early must never prompt or reach another machine ahead of the request: any
    host, transport or parameter leaves the connection to the service's first use."""
    assert _local_uri(uri) is local


@pytest.fixture
def conf(svt_env, tmp_path):
    return conf_file(svt_env, tmp_path)
