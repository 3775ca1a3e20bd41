"""A private, real PAM stack for tests: cwrap's pam_wrapper with the pam_matrix module.

pam_wrapper (Debian ``libpam-wrapper``) is a libpam that reads service files from
``$PAM_WRAPPER_SERVICE_DIR`` instead of /etc/pam.d when ``PAM_WRAPPER=1``.  pam_matrix checks
passwords against a text file ``user:password:allowed_service``; its *account* step refuses a
user whose allowed service is a different one — which is how tests model an expired/locked
account (PAM account management failure).

Two facts found by experiment (Debian pam_wrapper 1.1.4) shape this module:

* pam_wrapper reads its variables at the first ``pam_start`` in a process (not at library
  load, so setting os.environ in-process works) and copies the service directory **once per
  process**; later changes of ``PAM_WRAPPER_SERVICE_DIR`` or of the service files are ignored.
* pam_matrix reads ``$PAM_MATRIX_PASSWD`` on every call.

So the service files name no passdb; ``activate`` points ``PAM_MATRIX_PASSWD`` at this
wrapper's passdb, and any number of wrappers (one per test) can follow each other in one
process as long as they use the service names of the first (``secured-virt`` by default).

Usage in a test (in-process)::

    pw = make_pam_wrapper(tmp_path, {"svt-alice": "secret", "svt-bob": ("pw", "other")})
    pw.activate()            # PAM calls in this process now go to pam_wrapper
    try: ...
    finally: pw.deactivate()

In a child interpreter (e.g. a daemon under test), run ``pw.child_prelude()`` first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

LIBPAM_WRAPPER = "/usr/lib/x86_64-linux-gnu/libpam_wrapper.so"
PAM_MATRIX = "/usr/lib/x86_64-linux-gnu/pam_wrapper/pam_matrix.so"
ENV_NAMES = ("PAM_WRAPPER", "PAM_WRAPPER_SERVICE_DIR", "PAM_MATRIX_PASSWD")

#: service names of the first wrapper activated in this process (pam_wrapper's copy)
_process_services: frozenset[str] | None = None


def unavailable_reason() -> str | None:
    """Why pam_wrapper cannot be used here (None when it can): for pytest.skip messages."""
    for path in (LIBPAM_WRAPPER, PAM_MATRIX):
        if not os.path.exists(path):
            return f"{path} is missing (install the Debian package libpam-wrapper)"
    return None


@dataclass(frozen=True)
class PamWrapper:
    service_dir: str
    passdb: str
    service: str

    def env(self) -> dict[str, str]:
        return {
            "PAM_WRAPPER": "1",
            "PAM_WRAPPER_SERVICE_DIR": self.service_dir,
            "PAM_MATRIX_PASSWD": self.passdb,
        }

    def set_users(self, users: Mapping[str, str | tuple[str, str]]) -> None:
        """Rewrite the passdb: name -> password (for this service) or (password, service)."""
        _write_passdb(self.passdb, users, self.service)

    def activate(self) -> None:
        from secured_virt.access.pamauth import use_pam_library

        global _process_services
        services = frozenset(os.listdir(self.service_dir))
        if _process_services is not None and not services <= _process_services:
            raise RuntimeError(
                f"pam_wrapper already uses the services {sorted(_process_services)} in this "
                f"process and cannot load new ones ({sorted(services - _process_services)}); "
                "use a subprocess"
            )
        os.environ.update(self.env())
        use_pam_library(LIBPAM_WRAPPER)
        if _process_services is None:
            _process_services = services

    def deactivate(self) -> None:
        from secured_virt.access.pamauth import use_pam_library

        for name in ENV_NAMES:
            os.environ.pop(name, None)
        use_pam_library(None)

    def child_prelude(self) -> str:
        """Python source that switches a fresh interpreter to this PAM stack."""
        return (
            "from secured_virt.testing.pamwrap import PamWrapper as _PW\n"
            f"_PW(**{json.dumps(self.__dict__)}).activate()\n"
        )


def _write_passdb(path: str, users: Mapping[str, str | tuple[str, str]], service: str) -> None:
    lines = []
    for name, entry in users.items():
        password, allowed = (entry, service) if isinstance(entry, str) else entry
        for field in (name, password, allowed):
            if ":" in field or "\n" in field:
                raise ValueError(f"pam_matrix fields cannot contain ':' or newlines: {field!r}")
        lines.append(f"{name}:{password}:{allowed}\n")
    tmp = f"{path}.tmp"
    Path(tmp).write_text("".join(lines))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def make_pam_wrapper(
    base_dir: str | os.PathLike,
    users: Mapping[str, str | tuple[str, str]],
    service: str = "secured-virt",
) -> PamWrapper:
    """Create ``base_dir/pam.d/<service>`` (auth + account via pam_matrix) and a passdb.

    ``users`` maps a name to its password (allowed for ``service``) or to
    ``(password, allowed_service)``.
    The files are world-readable so processes running as other test uids can use them too;
    they hold test passwords only.
    """
    base = Path(base_dir)
    service_dir = base / "pam.d"
    service_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o755)  # noqa: S103 - other test uids must reach it
    os.chmod(service_dir, 0o755)  # noqa: S103
    passdb = str(base / "passdb")
    _write_passdb(passdb, users, service)
    svc = service_dir / service
    svc.write_text(  # passdb comes from $PAM_MATRIX_PASSWD (see the module docstring)
        f"auth required {PAM_MATRIX}\naccount required {PAM_MATRIX}\n"
    )
    os.chmod(svc, 0o644)
    return PamWrapper(str(service_dir), passdb, service)
