"""secured_virt.netfront: what the Xen-API and the web console share, checked once for both.

The certificate: made self-signed when none is configured, its subject naming the front-end
that made it, the key 0600 and refused when others may read it or half a pair is there.  The
programs: neither runs as root, neither serves unless turned on.  The svirtd link: requests
and the console are framed by the one ``Link``, against a real svirtd, which refuses session
frames from a uid that is not a front-end's (here root's) and audits the refusal.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from secured_virt.netfront import tls
from secured_virt.netfront.link import Link
from secured_virt.testing.asuid import setpriv_prefix
from secured_virt.web.server import FRONTEND as WEB
from secured_virt.xenapi.server import FRONTEND as XENAPI

PY = sys.executable  # the test venv (world-readable: setup makes it so)


def subject_of(cert: Path) -> str:
    return subprocess.run(
        ["/usr/bin/openssl", "x509", "-noout", "-subject", "-in", str(cert)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.mark.parametrize("fe", [XENAPI, WEB], ids=lambda fe: fe.prefix)
def test_the_self_signed_certificate_names_its_front_end(tmp_path, fe):
    cert, key = tmp_path / "state" / "cert.pem", tmp_path / "state" / "key.pem"
    assert tls.ensure_certificate(str(cert), str(key), "127.0.0.1", subject=fe.subject)
    assert subject_of(cert).endswith(f"CN = {fe.subject}")
    assert os.stat(key).st_mode & 0o777 == 0o600
    assert os.stat(cert.parent).st_mode & 0o777 == 0o700
    # a second start keeps the pair it finds
    before = cert.read_bytes()
    assert not tls.ensure_certificate(str(cert), str(key), "127.0.0.1", subject=fe.subject)
    assert cert.read_bytes() == before
    tls.server_context(str(cert), str(key))  # usable as it is


def test_a_key_others_may_read_and_half_a_pair_are_refused(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    tls.ensure_certificate(str(cert), str(key), "::1", subject=WEB.subject)
    os.chmod(key, 0o640)
    with pytest.raises(tls.TlsError, match="mode 0640; others could read it: chmod 600"):
        tls.server_context(str(cert), str(key))
    key.unlink()
    with pytest.raises(tls.TlsError, match=r"only one of .* \(web_cert, web_key\)"):
        tls.ensure_certificate(
            str(cert), str(key), "::1", subject=WEB.subject, keys="web_cert, web_key"
        )
    with pytest.raises(tls.TlsError, match="unusable certificate subject"):
        tls.ensure_certificate(
            str(tmp_path / "c2"), str(tmp_path / "k2"), "::1", subject="x/CN=evil"
        )


@pytest.mark.skipif(os.geteuid() != 0, reason="checks the refusal to run as root")
@pytest.mark.parametrize("module", ["secured_virt.xenapi", "secured_virt.web"])
def test_neither_program_runs_as_root(module, tmp_path):
    r = subprocess.run(
        [PY, "-I", "-m", module, "--config", str(tmp_path / "none.conf")],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=60,
    )
    assert r.returncode == 2, r.stderr
    prog = "svirt-xenapi" if module.endswith("xenapi") else "svirt-web"
    assert f"{prog} must not run as root" in r.stderr and f"{prog}.service" in r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="runs the programs as another uid")
@pytest.mark.parametrize("fe", [XENAPI, WEB], ids=lambda fe: fe.prefix)
def test_neither_program_serves_unless_turned_on(fe, readable_src):
    """As the front-end's own uid, with a root-owned configuration that does not say
    ``<prefix> = yes``: exit 4, the message says which key turns it on, nothing listens."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "xenapi_conftest", Path(__file__).with_name("conftest.py")
    )
    xc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(xc)
    pw = xc.ensure_user(xc.FRONTEND_USER)
    conf = Path(tempfile.mkdtemp(prefix="svt-netfront.")) / "secured-virt.conf"
    os.chmod(conf.parent, 0o755)  # the front-end's uid must reach it (pytest's tmp is 0700)
    conf.write_text(f"[secured-virt]\nsocket = {conf.parent / 'none.sock'}\n")
    os.chmod(conf, 0o644)
    r = subprocess.run(
        [*setpriv_prefix(pw), PY, "-I", "-c",
         f"import sys; sys.path.insert(0, {str(readable_src)!r}); "
         f"from secured_virt.{fe.prefix}.server import main; sys.exit(main(sys.argv[1:]))",
         "--config", str(conf)],
        capture_output=True, text=True, cwd="/", timeout=60, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    shutil.rmtree(conf.parent)
    assert r.returncode == 4, r.stderr
    assert f"{fe.title} is off: set '{fe.prefix} = yes'" in r.stderr


@pytest.mark.integration
def test_the_link_frames_requests_and_consoles_for_svirtd(xen):
    """Root is no front-end's user: svirtd answers the link's request frame and its console
    frame with a refusal (check ``identity``), each audited with the peer the link passed."""
    token = "A" * 43

    async def go():
        link = Link(xen.env.socket, program="pytest-netfront", size=2)
        try:
            info = await link.call({"type": "session_info", "token": token, "peer": "192.0.2.9:1"})
            console = await link.console(token, "alice-web", "192.0.2.9:2")
            console.close()
            return info, console.reply
        finally:
            link.close()

    info, reply = asyncio.run(go())
    for r in (info, reply):
        assert r.status == 3 and r.check == "identity", r
        assert "is not a remote front-end's user" in r.message
    refusals = [
        a
        for a in xen.audit()
        if a.get("check") == "identity" and a.get("peer", "").startswith("192.0.2.9:")
    ]
    assert len(refusals) == 2, refusals


def test_the_link_talks_only_to_a_socket_root_serves(tmp_path, test_users):
    """A login's password goes over this link: a socket that another user serves (a path
    pointed elsewhere, or a planted socket) gets neither the hello nor any frame."""
    from secured_virt.netfront.link import LinkError
    from secured_virt.testing.foreign import foreign_listener

    bob = test_users["svt-bob"]

    async def go(path):
        link = Link(str(path), program="pytest-netfront", size=1)
        try:
            with pytest.raises(LinkError, match=f"served by uid {bob.pw_uid}, not by root"):
                await link.call({"type": "session_info", "token": "A" * 43, "peer": None})
        finally:
            link.close()

    with foreign_listener(bob) as fake:
        asyncio.run(go(fake.path))
        assert fake.received() == 0
