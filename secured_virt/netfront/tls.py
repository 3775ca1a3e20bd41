"""The front-ends' TLS: a configured certificate, or a self-signed one made once.

HTTPS only: passwords and session tokens cross the network.  When no certificate is
configured (nothing at ``<prefix>_cert``/``<prefix>_key``), ``--setup`` or the first start
makes a self-signed one with ``openssl req`` (argv list, absolute path, no shell): an ECDSA
P-256 key written 0600 under umask 077, owned by the front-end's user, and a certificate for
``localhost``, this host's name and the listen address, whose subject names the front-end
(``subject``).  Clients then pin that certificate (docs/xenapi.md, docs/web.md).  A key that
others can read, or that belongs to another uid, is refused: it would let them impersonate
the endpoint.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import ssl
import stat
import subprocess

OPENSSL = "/usr/bin/openssl"


class TlsError(Exception):
    """The certificate or key cannot be used; the message says what to do."""


def ensure_certificate(
    cert: str, key: str, listen: str, *, subject: str, keys: str = "cert, key"
) -> bool:
    """Make a self-signed certificate (CN ``subject``) if neither file exists; True if one
    was made.  ``keys`` names the configuration keys in errors (``xenapi_cert, xenapi_key``)."""
    have_cert, have_key = os.path.exists(cert), os.path.exists(key)
    if have_cert and have_key:
        return False
    if have_cert != have_key:
        raise TlsError(
            f"only one of {cert} and {key} exists; give both ({keys}) or "
            "remove the other so a self-signed pair can be made"
        )
    if not subject or "/" in subject or "\n" in subject:
        raise TlsError(f"unusable certificate subject {subject!r}")
    for d in {os.path.dirname(cert), os.path.dirname(key)}:
        os.makedirs(d, mode=0o700, exist_ok=True)
    names = ["DNS:localhost", "IP:127.0.0.1", "IP:::1"]
    with contextlib.suppress(ValueError):
        ip = ipaddress.ip_address(listen)
        if not ip.is_unspecified and f"IP:{ip}" not in names:
            names.append(f"IP:{ip}")
    host = socket.gethostname()
    if host and host.replace("-", "").replace(".", "").isalnum():
        names.append(f"DNS:{host}")
    tmp_cert, tmp_key = f"{cert}.{os.getpid()}.tmp", f"{key}.{os.getpid()}.tmp"
    old = os.umask(0o077)
    try:
        argv = [
            OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "825", "-subj", f"/CN={subject}",
            "-addext", "subjectAltName=" + ",".join(names),
            "-keyout", tmp_key, "-out", tmp_cert,
        ]  # fmt: skip
        res = subprocess.run(
            argv, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"}
        )
        if res.returncode != 0:
            raise TlsError(f"openssl could not make a certificate: {res.stderr.strip()}")
        os.chmod(tmp_key, 0o600)
        os.chmod(tmp_cert, 0o644)
        os.replace(tmp_key, key)
        os.replace(tmp_cert, cert)
    finally:
        os.umask(old)
        for t in (tmp_cert, tmp_key):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(t)
    return True


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """A TLS 1.2+ server context; refuses a key file anyone but its owner may read."""
    try:
        st = os.stat(key)
    except OSError as exc:
        raise TlsError(f"cannot use the key {key}: {exc.strerror}") from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise TlsError(
            f"the key {key} has mode {stat.S_IMODE(st.st_mode):04o}; others could read it: "
            f"chmod 600 {key}"
        )
    if st.st_uid != os.geteuid():
        raise TlsError(f"the key {key} belongs to uid {st.st_uid}, not to us ({os.geteuid()})")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"cannot load {cert} / {key}: {exc}") from None
    return ctx
