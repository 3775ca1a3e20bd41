"""Checks on everything the xl backend puts on xl's command line or into a file name.

Kept apart from the code that runs xl because these rules are the backend's defence against
argument injection, and they are easier to review (and to test) as pure functions.

Domain names: no '/', no leading '.' or '-', no whitespace or control characters, and not all
digits - xl resolves an all-digit argument as a domain *id*
(``libxl_domain_qualifier_to_domid``), so a domain named "7" could stand for domain id 7.
Migration hosts are checked even more strictly, because ``xl migrate`` pastes the host into
an ``sh -c "ssh HOST xl migrate-receive"`` command line.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from .base import BackendError

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+:@-]{0,63}\Z")
_HOST = re.compile(
    r"^(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\Z"
)


def check_name(name) -> str:
    """A domain name that is safe as an xl operand and as a file name, or BackendError."""
    if not isinstance(name, str) or not _NAME.match(name) or name.isdigit() or name.endswith("."):
        raise BackendError(
            "invalid-arg",
            f"invalid Xen domain name {name!r}: use 1-64 letters, digits and _ . + : @ -, "
            "not starting with '.' or '-', and not only digits (xl reads those as domain ids)",
        )
    return name


def looks_like_name(text: str) -> bool:
    """Whether a name found on the system (a file stem, a name xl listed) has the shape of
    a domain name - the quick filter used while listing, where a miss is skipped, not an error."""
    return bool(_NAME.match(text)) and not text.isdigit()


def size_arg(kib: int) -> str:
    """xl's memory argument: whole MiB as '512m', otherwise KiB as '524289k'."""
    return f"{kib // 1024}m" if kib % 1024 == 0 else f"{kib}k"


def positive(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise BackendError("invalid-arg", f"invalid {what} {value!r}: expected a positive integer")
    return value


def whole_mib(kib: int) -> int:
    if kib % 1024:
        raise BackendError(
            "invalid-arg",
            f"xl configs hold memory in MiB: {kib} KiB is not a whole number of MiB",
        )
    return kib // 1024


def check_path(path, what: str) -> str:
    if not isinstance(path, str) or not path or "\x00" in path or "\n" in path:
        raise BackendError("invalid-arg", f"invalid {what} path {path!r}")
    if not os.path.isabs(path):
        raise BackendError(
            "invalid-arg",
            f"{what} path {path!r} must be absolute: xl does not share your working directory",
        )
    return path


def migrate_host(dest_uri) -> str:
    """The host of a migration destination, checked to be safe inside xl's ``sh -c``."""
    if not isinstance(dest_uri, str) or not dest_uri:
        raise BackendError("invalid-arg", f"invalid migration destination {dest_uri!r}")
    host = dest_uri
    if "://" in dest_uri:
        parts = urlsplit(dest_uri)
        if parts.username or parts.password or parts.port or parts.query:
            raise BackendError(
                "invalid-arg",
                f"invalid migration destination {dest_uri!r}: give only a host name "
                "(users, ports and options belong in root's ssh configuration)",
            )
        host = parts.hostname or ""
        if parts.path not in ("", "/", "/system"):
            raise BackendError("invalid-arg", f"invalid migration destination {dest_uri!r}")
    if not _HOST.match(host):
        raise BackendError(
            "invalid-arg",
            f"invalid migration host {host!r}: a DNS name or IPv4 address (letters, digits, "
            "'-' and '.') is required, because xl passes it to a shell",
        )
    return host
