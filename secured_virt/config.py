"""The host configuration: ``/etc/secured-virt/secured-virt.conf`` (INI, one section).

Why so strict: the file decides which policy files, socket and log the root-run front-end uses,
so it is treated like sudoers.  It is read only if the open file is root-owned and not
group/world-writable; only root may point the programs at another file (``--config``); a
missing file means the embedded defaults below.  Every key is typed and checked, unknown keys
and sections are errors, and every error names ``file:line`` and the key, so a typo never
silently falls back to a default.

Format::

    # comment            ; comment
    [secured-virt]
    key = value

Booleans are yes/no (also true/false, on/off, 1/0); ``socket_mode`` is octal; lists are
comma-separated; durations are seconds (``30`` or ``30s``) or minutes (``5m``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .fsutil import UnsafeFileError, read_trusted_file

CONFIG_PATH = "/etc/secured-virt/secured-virt.conf"
SECTION = "secured-virt"
MAX_CONFIG_BYTES = 256 * 1024

__all__ = [
    "CONFIG_PATH",
    "SVIRTD_LIVE_KEYS",
    "Config",
    "ConfigError",
    "default_config",
    "load_config",
    "parse_config",
    "svirtd_restart_keys",
]


class ConfigError(Exception):
    """The configuration cannot be used; the message names file:line and key (exit code 4)."""


@dataclass(frozen=True, slots=True)
class Config:
    """Typed settings; defaults are the embedded defaults used when no file exists."""

    backend: str = "libvirt"
    uri: str = "test:///default"
    ua: str = "/etc/secured-virt/ua.xml"
    pa: str = "/etc/secured-virt/pa.xml"
    #: root's realms file (secured_virt.tenancy.model); missing: no realms, as before
    realms: str = "/etc/secured-virt/realms.xml"
    #: where svirtd keeps each realm's own file (its admin's changes) and its last good copy
    realm_state_dir: str = "/var/lib/secured-virt/realms"
    host_object: str = "Domain-0"
    acm: bool = False
    #: sVirt: every running VM holds a category pair no other running VM holds (state in
    #: acm_state_dir; secured_virt.shype.categories)
    svirt: bool = True
    acm_state_dir: str = "/var/lib/secured-virt/acm"
    label_store: str = "/var/lib/secured-virt/resource-labels.xml"
    audit_log: str = "/var/log/secured-virt/audit.log"
    audit_syslog: bool = True
    socket: str = "/run/secured-virt/svirtd.sock"
    socket_group: str = "root"
    socket_mode: int = 0o666
    request_max_bytes: int = 1048576
    idle_timeout: float = 30.0
    #: svirtd runs all its threads on one CPU, with the libvirt backend (daemon.cpu says why)
    svirtd_one_cpu: bool = True
    #: svirtd lets this many requests into the service at once, the others wait their turn
    #: (0: no limit); one in for svirtd_slow_request_ms stops counting (daemon.admission)
    svirtd_active_requests: int = 16
    svirtd_slow_request_ms: float = 50.0
    pam_service: str = "secured-virt"
    auth_operations: frozenset[str] = frozenset()
    auth_timeout_minutes: float = 5.0
    auth_dir: str = "/run/secured-virt/ts"
    #: a role stays active in a login session this long after its last use (DSD; see
    #: secured_virt.access.rolesession)
    role_session_minutes: float = 15.0
    #: root-only directory where svirt-admin edit keeps its locks and the previous version of
    #: UA/PA (never beside the role files: see secured_virt.rolefiles.install)
    rolefile_state_dir: str = "/var/lib/secured-virt/rolefiles"
    editor: str = "/usr/bin/editor"
    allow_env_editor: bool = False
    xl_path: str = "/usr/sbin/xl"
    xl_config_dir: str = "/etc/xen"
    #: where the xl backend keeps the config (and label) of a domain running without a config
    #: file of its own: created, restored or migrated here (the xl migration receiver too)
    xl_transient_dir: str = "/run/secured-virt/xl"
    #: where save images of non-root callers go (one 0700 directory per user)
    save_dir: str = "/var/lib/secured-virt/save"
    #: the only directories disk images of non-root callers' domains may come from
    #: (secured_virt.confinement.disks says why and what else is checked)
    disk_dirs: tuple[str, ...] = ("/var/lib/libvirt/images",)
    #: migration destinations and the directory holding their sHype/ACM state, so the
    #: destination's policy is checked before the domain runs there: "URI=DIR, URI2=DIR2"
    acm_peers: tuple[tuple[str, str], ...] = ()
    #: remote front-ends and the system user each runs as ("xenapi:svirt-xenapi, web:svirt-web"):
    #: svirtd takes session frames only from these uids and gives their requests that ``via``
    #: (secured_virt.daemon.websessions, docs/protocol.md); empty: no remote front-end at all
    frontends: tuple[tuple[str, str], ...] = ()
    #: a front-end session ends this long after its last use, and this long after its login
    session_idle_minutes: float = 30.0
    session_max_minutes: float = 480.0
    session_max_per_user: int = 32
    session_max_total: int = 10000
    #: root may log in through a remote front-end only when this says yes
    session_allow_root: bool = False
    #: failed logins within the window after which more logins are refused without asking PAM
    login_max_failures_user: int = 5
    login_max_failures_address: int = 20
    login_failure_window_minutes: float = 5.0
    #: the secured Xen-API (secured_virt.xenapi, docs/xenapi.md): off unless xenapi = yes
    xenapi: bool = False
    xenapi_listen: str = "127.0.0.1"
    xenapi_port: int = 9367
    xenapi_cert: str = "/var/lib/svirt-xenapi/cert.pem"
    xenapi_key: str = "/var/lib/svirt-xenapi/key.pem"
    xenapi_max_body_bytes: int = 1048576
    xenapi_max_connections: int = 2048
    xenapi_request_timeout: float = 20.0
    #: the web console (secured_virt.web, docs/web.md): off unless web = yes
    web: bool = False
    web_listen: str = "127.0.0.1"
    web_port: int = 9368
    web_cert: str = "/var/lib/svirt-web/cert.pem"
    web_key: str = "/var/lib/svirt-web/key.pem"
    web_max_body_bytes: int = 65536
    web_max_connections: int = 2048
    web_request_timeout: float = 20.0
    web_max_websockets: int = 2000
    web_max_websockets_per_session: int = 16
    web_refresh_seconds: float = 5.0
    #: the file these settings came from; None for the embedded defaults
    source: str | None = None


def default_config() -> Config:
    return Config()


# -- value parsers: each takes the raw text and returns the typed value or raises ValueError ----
_TRUE = {"yes", "true", "on", "1"}
_FALSE = {"no", "false", "off", "0"}


def _bool(text: str) -> bool:
    low = text.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"expected yes or no, got {text!r}")


def _abs_path(text: str) -> str:
    if not text.startswith("/"):
        raise ValueError(f"expected an absolute path, got {text!r}")
    if "\x00" in text or any(part == ".." for part in text.split("/")):
        raise ValueError(f"path {text!r} may not contain '..' components")
    return text


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {text!r}")
        return text

    return parse


def _int_range(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not re.fullmatch(r"\d+", text):
            raise ValueError(f"expected a whole number, got {text!r}")
        n = int(text)
        if not lo <= n <= hi:
            raise ValueError(f"{n} is outside the allowed range {lo}..{hi}")
        return n

    return parse


def _octal_mode(text: str) -> int:
    if not re.fullmatch(r"0?[0-7]{3}", text):
        raise ValueError(f"expected an octal mode such as 0660, got {text!r}")
    return int(text, 8)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smh]?)")


def _duration(unit_seconds: float, lo: float, hi: float) -> Callable[[str], float]:
    """A number in the key's own unit, or with an s/m/h suffix; returned in the key's unit."""

    def parse(text: str) -> float:
        m = _DURATION.fullmatch(text)
        if not m:
            raise ValueError(f"expected a duration such as 30, 30s or 5m, got {text!r}")
        value = float(m.group(1))
        if m.group(2):
            value = value * {"s": 1, "m": 60, "h": 3600}[m.group(2)] / unit_seconds
        if not lo <= value <= hi:
            raise ValueError(f"{text} is outside the allowed range {lo:g}..{hi:g}")
        return value

    return parse


_NAME = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,63}")


def _name(what: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if not _NAME.fullmatch(text):
            raise ValueError(f"{text!r} is not a valid {what}")
        return text

    return parse


def _text(text: str) -> str:
    if not text:
        raise ValueError("a value is required")
    if any(ord(c) < 32 for c in text):
        raise ValueError("control characters are not allowed")
    return text


def _operations(text: str) -> frozenset[str]:
    from secured_virt.access.operations import CATALOGUE

    names = set()
    for token in (t.strip() for t in text.split(",")):
        if not token:
            continue
        try:
            names.add(CATALOGUE.get(token).name)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None
    return frozenset(names)


def _peers(text: str) -> tuple[tuple[str, str], ...]:
    out = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        uri, sep, directory = item.rpartition("=")
        if not sep or not uri.strip():
            raise ValueError(f"'{item}': write URI=DIRECTORY (e.g. qemu+ssh://h2/system=/srv/h2)")
        out.append((uri.strip(), _abs_path(directory.strip())))
    return tuple(out)


def _frontends(text: str) -> tuple[tuple[str, str], ...]:
    out: dict[str, str] = {}
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        via, sep, user = (x.strip() for x in item.partition(":"))
        if not sep or via not in ("xenapi", "web"):
            raise ValueError(f"'{item}': write xenapi:USER or web:USER (e.g. xenapi:svirt-xenapi)")
        if via in out:
            raise ValueError(f"front-end '{via}' is named twice")
        out[via] = _name("user name")(user)
    if len(set(out.values())) != len(out):
        raise ValueError("each front-end needs its own system user")
    return tuple(out.items())


def _listen(text: str) -> str:
    import ipaddress

    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"'{text}' is not an IP address (e.g. 127.0.0.1 or ::1)") from None


def _paths(text: str) -> tuple[str, ...]:
    return tuple(_abs_path(t.strip().rstrip("/") or "/") for t in text.split(",") if t.strip())


_PARSERS: dict[str, Callable[[str], Any]] = {
    "backend": _choice("libvirt", "xl"),
    "uri": _text,
    "ua": _abs_path,
    "pa": _abs_path,
    "realms": _abs_path,
    "realm_state_dir": _abs_path,
    "host_object": _name("object name"),
    "acm": _bool,
    "svirt": _bool,
    "acm_state_dir": _abs_path,
    "label_store": _abs_path,
    "audit_log": _abs_path,
    "audit_syslog": _bool,
    "socket": _abs_path,
    "socket_group": _name("group name"),
    "socket_mode": _octal_mode,
    "request_max_bytes": _int_range(1024, 64 * 1024 * 1024),
    "idle_timeout": _duration(1, 1, 86400),
    "svirtd_one_cpu": _bool,
    "svirtd_active_requests": _int_range(0, 4096),
    "svirtd_slow_request_ms": _duration(0.001, 1, 600000),
    "pam_service": _name("PAM service name"),
    "auth_operations": _operations,
    "auth_timeout_minutes": _duration(60, 0, 24 * 60),
    "auth_dir": _abs_path,
    "role_session_minutes": _duration(60, 1, 24 * 60),
    "rolefile_state_dir": _abs_path,
    "editor": _abs_path,
    "allow_env_editor": _bool,
    "xl_path": _abs_path,
    "xl_config_dir": _abs_path,
    "xl_transient_dir": _abs_path,
    "save_dir": _abs_path,
    "disk_dirs": _paths,
    "acm_peers": _peers,
    "frontends": _frontends,
    "session_idle_minutes": _duration(60, 1, 24 * 60),
    "session_max_minutes": _duration(60, 1, 7 * 24 * 60),
    "session_max_per_user": _int_range(1, 10000),
    "session_max_total": _int_range(1, 1000000),
    "session_allow_root": _bool,
    "login_max_failures_user": _int_range(1, 1000),
    "login_max_failures_address": _int_range(1, 100000),
    "login_failure_window_minutes": _duration(60, 1, 24 * 60),
    "xenapi": _bool,
    "xenapi_listen": _listen,
    "xenapi_port": _int_range(1, 65535),
    "xenapi_cert": _abs_path,
    "xenapi_key": _abs_path,
    "xenapi_max_body_bytes": _int_range(4096, 64 * 1024 * 1024),
    "xenapi_max_connections": _int_range(16, 100000),
    "xenapi_request_timeout": _duration(1, 1, 600),
    "web": _bool,
    "web_listen": _listen,
    "web_port": _int_range(1, 65535),
    "web_cert": _abs_path,
    "web_key": _abs_path,
    "web_max_body_bytes": _int_range(4096, 16 * 1024 * 1024),
    "web_max_connections": _int_range(16, 100000),
    "web_request_timeout": _duration(1, 1, 600),
    "web_max_websockets": _int_range(1, 100000),
    "web_max_websockets_per_session": _int_range(1, 1000),
    "web_refresh_seconds": _duration(1, 1, 3600),
}
assert set(_PARSERS) == {f.name for f in dataclasses.fields(Config)} - {"source"}

#: keys a running svirtd takes on at ``svirt-admin reload`` (SIGHUP, or the file changing): the
#: role files (a new store path is simply loaded), what the service reads per request, and
#: what only svirt-admin uses.  Every other key is fixed when svirtd starts -- the hypervisor
#: connection, the socket, the audit log, PAM and the authentication/role-session settings
#: the gate was built with, and ``acm``: switching mandatory access control on or off under
#: running requests cannot be done atomically, so svirtd refuses such a reload by naming the
#: key instead of answering "ok" while enforcing the old setting.  A key added later is a
#: restart key until someone shows it can be applied live.
SVIRTD_LIVE_KEYS = frozenset(
    {
        "ua",
        "pa",
        "realms",
        "save_dir",
        "disk_dirs",
        "acm_peers",
        "label_store",
        "editor",
        "allow_env_editor",
        "rolefile_state_dir",
        # the Xen-API front-end's own keys: svirtd does not use them (restart svirt-xenapi)
        "xenapi",
        "xenapi_listen",
        "xenapi_port",
        "xenapi_cert",
        "xenapi_key",
        "xenapi_max_body_bytes",
        "xenapi_max_connections",
        "xenapi_request_timeout",
        # the web console's own keys: svirtd does not use them (restart svirt-web)
        "web",
        "web_listen",
        "web_port",
        "web_cert",
        "web_key",
        "web_max_body_bytes",
        "web_max_connections",
        "web_request_timeout",
        "web_max_websockets",
        "web_max_websockets_per_session",
        "web_refresh_seconds",
    }
)


assert SVIRTD_LIVE_KEYS.issubset(_PARSERS)


def svirtd_restart_keys() -> frozenset[str]:
    """The keys svirtd applies only when it starts (see SVIRTD_LIVE_KEYS)."""
    return frozenset(_PARSERS) - SVIRTD_LIVE_KEYS


_SECTION_RE = re.compile(r"\[\s*([^\]]*?)\s*\]")
_KEY_RE = re.compile(r"[a-z_][a-z0-9_]*")


def parse_config(text: str, source: str) -> Config:
    """Parse INI text; ``source`` is the file name used in error messages."""
    values: dict[str, Any] = {}
    seen: dict[str, int] = {}
    section: str | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        where = f"{source}:{lineno}"
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        m = _SECTION_RE.fullmatch(line)
        if m:
            if m.group(1) != SECTION:
                raise ConfigError(
                    f"{where}: unknown section [{m.group(1)}]; the only section is [{SECTION}]"
                )
            section = m.group(1)
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not _KEY_RE.fullmatch(key):
            raise ConfigError(f"{where}: expected 'key = value' or '[{SECTION}]', got {raw!r}")
        if section is None:
            raise ConfigError(f"{where}: key '{key}' appears before the [{SECTION}] section header")
        parser = _PARSERS.get(key)
        if parser is None:
            raise ConfigError(
                f"{where}: unknown key '{key}' (known keys: {', '.join(sorted(_PARSERS))})"
            )
        if key in seen:
            raise ConfigError(f"{where}: key '{key}' is already set on line {seen[key]}")
        seen[key] = lineno
        try:
            values[key] = parser(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: bad value for '{key}': {exc}") from None
    return Config(**values, source=source)


def load_config(path: str | None = None, *, caller_uid: int) -> Config:
    """Load the configuration for a caller with real uid ``caller_uid``.

    Only uid 0 may name a file other than CONFIG_PATH: otherwise any user could hand the
    root-run front-end their own policy files and socket.  A missing CONFIG_PATH yields the
    defaults (a missing explicitly named file is an error);
    an unsafe or invalid one raises ConfigError (fail closed, exit 4).
    """
    explicit = path is not None and path != CONFIG_PATH
    if path is None:
        path = CONFIG_PATH
    elif explicit and caller_uid != 0:
        raise ConfigError(
            f"only root may choose another configuration file; you are uid {caller_uid} and "
            f"asked for {path} (omit --config to use {CONFIG_PATH})"
        )
    try:
        data = read_trusted_file(path, max_size=MAX_CONFIG_BYTES, owner_uid=0)
    except FileNotFoundError:
        if explicit:  # a typo in --config must not silently mean "defaults"
            raise ConfigError(f"{path}: no such configuration file") from None
        return Config()
    except UnsafeFileError as exc:
        raise ConfigError(f"{exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: the file is not valid UTF-8") from None
    return parse_config(text, path)
