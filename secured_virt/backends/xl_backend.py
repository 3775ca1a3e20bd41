"""The Xen backend: every operation through the ``xl`` command, never through a shell.

How it runs xl (all in ``_run``, the single place a process is started):

* argv lists with xl's absolute path (a constructor argument, default /usr/sbin/xl);
* ``--`` before the first operand: xl parses options with getopt_long, which stops at ``--``,
  so a domain name or path can never be taken for an option (``-a`` would mean "all");
* an environment holding only ``PATH=/usr/sbin:/usr/bin:/sbin:/bin`` (nothing from the
  caller: no LD_*, no XL_* overrides, no locale games);
* stdin from /dev/null and a timeout on every call.

Domain names are checked before use: no '/', no leading '.' or '-', no whitespace or control
characters, and not all digits - xl resolves an all-digit argument as a domain *id*
(``libxl_domain_qualifier_to_domid``), so a domain named "7" could stand for domain id 7.
Migration hosts are checked even more strictly, because ``xl migrate`` pastes the host into
an ``sh -c "ssh HOST xl migrate-receive"`` command line.

xl has no persistent "defined" domains; like libvirt's libxl driver we keep one config file
per domain, ``<xl_config_dir>/<name>.cfg`` (xl.cfg(5)), written atomically (temp file in the
same directory, fsync, rename) and read only when it is a regular file, not a symlink,
owned by root (or by the user running the backend) and not writable by group or others.
``start`` is ``xl create -- <file>``; ``create`` (transient) writes a config into
``xl_transient_dir`` and creates from there; autostart is xendomains' convention, a symlink
in ``<xl_config_dir>/auto``.

secured-virt's metadata (owner, ACM label) lives in two lines of that config file,
``svirt_owner = "alice"`` and ``access_control = ['policy=P,label=L']`` (see xl_model); the
backend offers them through get_metadata/set_metadata as the same ``<svirt:vm>`` element the
libvirt backend stores.  xl's own save images and migration streams carry libxl's JSON
config, which has no room for these lines, so after a restore or a migration the label is the
one in the config file of that name on the host doing the restore.

Not available with xl: snapshots, libvirt networks (interfaces are bridged), shareable disks,
a console stream for the daemon (``console_argv`` gives the ``xl console`` command to run
interactively), and "persistent" migration (xl cannot define the domain on the target).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import subprocess
import tempfile
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from lxml import etree

from . import domxml
from .base import (
    BackendError,
    DomainChanged,
    DomainInfo,
    NoSuchDomain,
    SnapshotInfo,
    report_progress,
)
from .xl_cfg import MAX_CONFIG_BYTES, XlConfig, XlConfigError
from .xl_model import SVIRT_NS, XlDisk, XlDomain, XlNic, parse_label
from .xl_parse import XlListEntry, parse_info, parse_list, parse_list_long, read_save_header

XL_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
DEFAULT_XL = "/usr/sbin/xl"
DEFAULT_CONFIG_DIR = "/etc/xen"
DEFAULT_TRANSIENT_DIR = "/run/secured-virt/xl"
DOM0_UUID = "00000000-0000-0000-0000-000000000000"

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+:@-]{0,63}\Z")
_HOST = re.compile(
    r"^(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\Z"
)
_FORMAT = re.compile(r"^[a-z0-9]{1,16}\Z")
_BRIDGE = re.compile(r"^[A-Za-z0-9_.-]{1,15}\Z")
_LIBXL_PREFIX = re.compile(r"^libxl: (?:error|warning): [^:]+:\d+:[^:]+: (?:Domain \d+:)?\s*")
_NOT_FOUND = ("is an invalid domain identifier", "does not exist", "maybe this domain does not")


def check_name(name) -> str:
    """A domain name that is safe as an xl operand and as a file name, or BackendError."""
    if not isinstance(name, str) or not _NAME.match(name) or name.isdigit() or name.endswith("."):
        raise BackendError(
            "invalid-arg",
            f"invalid Xen domain name {name!r}: use 1-64 letters, digits and _ . + : @ -, "
            "not starting with '.' or '-', and not only digits (xl reads those as domain ids)",
        )
    return name


def _size_arg(kib: int) -> str:
    """xl's memory argument: whole MiB as '512m', otherwise KiB as '524289k'."""
    return f"{kib // 1024}m" if kib % 1024 == 0 else f"{kib}k"


def _positive(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise BackendError("invalid-arg", f"invalid {what} {value!r}: expected a positive integer")
    return value


def _check_path(path, what: str) -> str:
    if not isinstance(path, str) or not path or "\x00" in path or "\n" in path:
        raise BackendError("invalid-arg", f"invalid {what} path {path!r}")
    if not os.path.isabs(path):
        raise BackendError(
            "invalid-arg",
            f"{what} path {path!r} must be absolute: xl does not share your working directory",
        )
    return path


def _detail(text: str) -> str:
    """The most telling line of xl's stderr: the first libxl error, else the last line."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("libxl: error"):
            return _LIBXL_PREFIX.sub("", ln)[:300]
    return lines[-1][:300] if lines else "xl failed without saying why"


class XlBackend:
    """Backend driving Xen's ``xl`` (needs root on a Xen dom0; tests mock ``_run``)."""

    name = "xl"

    def __init__(
        self,
        uri: str | None = None,
        *,
        xl_path: str = DEFAULT_XL,
        xl_config_dir: str = DEFAULT_CONFIG_DIR,
        xl_auto_dir: str | None = None,
        xl_transient_dir: str = DEFAULT_TRANSIENT_DIR,
        timeout: float = 60.0,
        long_timeout: float = 1800.0,
    ) -> None:
        if not os.path.isabs(xl_path):
            raise BackendError("invalid-arg", f"xl_path {xl_path!r} must be an absolute path")
        for what, d in (("xl_config_dir", xl_config_dir), ("xl_transient_dir", xl_transient_dir)):
            if "=" in d or not os.path.isabs(d):
                # `xl create` takes any operand containing '=' for a config *setting*
                raise BackendError(
                    "invalid-arg", f"{what} {d!r} must be an absolute path without '='"
                )
        self.uri = uri or "xl:///system"
        self.xl_path = xl_path
        self.config_dir = Path(xl_config_dir)
        self.auto_dir = Path(xl_auto_dir) if xl_auto_dir else self.config_dir / "auto"
        self.transient_dir = Path(xl_transient_dir)
        self.timeout = timeout
        self.long_timeout = long_timeout
        self._trusted_uids = {0, os.geteuid()}

    # -- running xl -----------------------------------------------------------------------
    def _run(self, args: list[str], *, timeout: float | None = None) -> subprocess.CompletedProcess:
        """Run ``xl ARGS`` (argv, no shell, scrubbed env, timeout); the only process spawn."""
        argv = [self.xl_path, *args]
        limit = timeout or self.timeout
        try:
            return subprocess.run(
                argv,
                env=dict(XL_ENV),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                encoding="utf-8",
                errors="replace",
                timeout=limit,
                check=False,
                close_fds=True,
            )
        except FileNotFoundError:
            raise BackendError(
                "connection",
                f"cannot run {self.xl_path}: no such file (is Xen's toolstack installed? "
                "set xl_path in secured-virt.conf)",
            ) from None
        except PermissionError:
            raise BackendError(
                "connection",
                f"cannot run {self.xl_path}: permission denied (xl needs root: non-root users "
                "must go through svirtd or sudo)",
            ) from None
        except subprocess.TimeoutExpired:
            raise BackendError(
                "timeout", f"`xl {args[0]}` did not finish within {limit:.0f} seconds"
            ) from None

    def _xl(self, action: str, name: str | None, args: list[str], **kw) -> str:
        r = self._run(args, **kw)
        if r.returncode != 0:
            raise self._fail(action, name, r)
        return r.stdout

    def _fail(self, action: str, name: str | None, r: subprocess.CompletedProcess) -> BackendError:
        err = f"{r.stderr or ''}\n{r.stdout or ''}"
        if name is not None and any(s in err for s in _NOT_FOUND):
            if self._config(name) is not None:
                return BackendError("operation-failed", f"domain '{name}' is not running")
            return NoSuchDomain(name)
        if "cannot init xl context" in err or "privcmd" in err:
            return BackendError(
                "connection",
                "cannot reach the Xen hypervisor (xl: cannot init xl context): is this a Xen "
                "dom0 with xenfs mounted, and running as root?",
            )
        where = f" domain '{name}'" if name is not None else ""
        return BackendError("operation-failed", f"cannot {action}{where}: {_detail(err)}")

    def _running(self, name: str) -> bool:
        return self._run(["domid", "--", name]).returncode == 0

    # -- config files ---------------------------------------------------------------------
    def _cfg_path(self, name: str) -> Path:
        return self.config_dir / f"{check_name(name)}.cfg"

    def _transient_path(self, name: str) -> Path:
        return self.transient_dir / f"{check_name(name)}.cfg"

    def _read_cfg(self, path: Path) -> XlConfig | None:
        """The parsed config at path (None if absent), refusing files others could have written."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise BackendError(
                    "operation-failed", f"refusing {path}: it is a symbolic link"
                ) from None
            raise BackendError("operation-failed", f"cannot read {path}: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            self._check_trusted(path, st, directory=False)
            data = os.read(fd, MAX_CONFIG_BYTES + 1)
        finally:
            os.close(fd)
        if len(data) > MAX_CONFIG_BYTES:
            raise BackendError("invalid-arg", f"refusing {path}: larger than 1 MiB")
        try:
            return XlConfig(data.decode("utf-8", errors="replace"), str(path))
        except XlConfigError as exc:
            raise BackendError("invalid-arg", f"{exc} (fix or remove the file)") from None

    def _check_trusted(self, path: Path, st: os.stat_result, *, directory: bool) -> None:
        kind = "directory" if directory else "regular file"
        ok_type = stat.S_ISDIR(st.st_mode) if directory else stat.S_ISREG(st.st_mode)
        if not ok_type:
            raise BackendError("operation-failed", f"refusing {path}: not a {kind}")
        if st.st_uid not in self._trusted_uids:
            raise BackendError(
                "operation-failed", f"refusing {path}: owned by uid {st.st_uid}, not root"
            )
        if st.st_mode & 0o022:
            raise BackendError(
                "operation-failed",
                f"refusing {path}: writable by group or others (chmod go-w {path})",
            )

    def _config(self, name: str) -> XlConfig | None:
        return self._read_cfg(self._cfg_path(name))

    def _any_config(self, name: str, running: bool | None = None) -> tuple[Path, XlConfig] | None:
        """The defined config, else (for a running transient domain) the transient one."""
        path = self._cfg_path(name)
        cfg = self._read_cfg(path)
        if cfg is not None:
            return path, cfg
        if running is None:
            running = self._running(name)
        if running:
            tpath = self._transient_path(name)
            tcfg = self._read_cfg(tpath)
            if tcfg is not None:
                return tpath, tcfg
        return None

    def _write_file(self, path: Path, text: str) -> None:
        """Atomically replace path with text (temp file in the same directory, fsync, rename)."""
        XlConfig(text, str(path))  # never write what we could not read back
        directory = path.parent
        try:
            st = os.stat(directory, follow_symlinks=False)
        except FileNotFoundError:
            raise BackendError(
                "operation-failed", f"cannot write {path}: directory {directory} does not exist"
            ) from None
        self._check_trusted(directory, st, directory=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fchmod(fh.fileno(), 0o644)
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(directory)

    def _save_cfg(self, path: Path, cfg: XlConfig) -> None:
        self._write_file(path, cfg.text)

    def _defined_names(self) -> list[str]:
        """Names with a readable ``<name>.cfg`` whose ``name =`` matches the file name."""
        names = []
        try:
            entries = list(os.scandir(self.config_dir))
        except OSError:
            return []
        for entry in entries:
            stem = entry.name[:-4] if entry.name.endswith(".cfg") else None
            if not stem or not _NAME.match(stem) or stem.isdigit():
                continue
            try:
                cfg = self._read_cfg(Path(entry.path))
            except BackendError:
                continue  # a broken file is reported by lookup/start of that name
            if cfg is not None and cfg.get("name") == stem:
                names.append(stem)
        return sorted(names)

    def _require_config(self, name: str) -> tuple[Path, XlConfig]:
        path = self._cfg_path(name)
        cfg = self._read_cfg(path)
        if cfg is None:
            if self._running(name):
                raise BackendError(
                    "operation-failed",
                    f"domain '{name}' has no config file {path}: it is transient "
                    "(define it to keep settings)",
                )
            raise NoSuchDomain(name)
        return path, cfg

    # -- listing --------------------------------------------------------------------------
    def _details(self, name: str | None = None) -> dict[int, XlDomain]:
        args = ["list", "-l"] + (["--", name] if name else [])
        r = self._run(args)
        if r.returncode != 0:
            return {}
        return {
            e["domid"]: XlDomain.from_json(e)
            for e in parse_list_long(r.stdout)
            if isinstance(e.get("domid"), int)
        }

    def _running_info(self, entry: XlListEntry, detail: XlDomain | None) -> DomainInfo:
        named = bool(_NAME.match(entry.name)) and not entry.name.isdigit()
        is_dom0 = entry.domid == 0
        persistent = is_dom0 or (named and self._cfg_path(entry.name).is_file())
        uuid = detail.uuid if detail and detail.uuid else (DOM0_UUID if is_dom0 else "")
        return DomainInfo(
            name=entry.name,
            uuid=uuid,
            id=entry.domid,
            state=entry.state,
            max_mem_kib=max(detail.max_mem_kib if detail else 0, entry.mem_mib * 1024),
            mem_kib=entry.mem_mib * 1024,
            vcpus=entry.vcpus,
            cpu_time_ns=round(entry.cpu_seconds * 1e9),
            persistent=persistent,
            autostart=named and not is_dom0 and self._autostart_link(entry.name),
            os_type=detail.os_type if detail else "linux",
        )

    def _inactive_info(self, name: str, cfg: XlConfig) -> DomainInfo:
        dom = XlDomain.from_config(cfg)
        return DomainInfo(
            name=name,
            uuid=dom.uuid,
            id=None,
            state="shut off",
            max_mem_kib=dom.max_mem_kib,
            mem_kib=dom.mem_kib,
            vcpus=dom.vcpus,
            cpu_time_ns=0,
            persistent=True,
            autostart=self._autostart_link(name),
            os_type=dom.os_type,
        )

    def list_domains(self, *, include_inactive: bool = False) -> list[DomainInfo]:
        """``xl list`` for state/memory/time, ``xl list -l`` for UUIDs, maximum memory and type;
        with include_inactive, also every defined config that is not running ("shut off")."""
        entries = parse_list(self._xl("list domains", None, ["list"]))
        details = self._details()
        out = [self._running_info(e, details.get(e.domid)) for e in entries]
        if include_inactive:
            running = {e.name for e in entries}
            for name in self._defined_names():
                if name not in running:
                    cfg = self._config(name)
                    if cfg is not None:
                        out.append(self._inactive_info(name, cfg))
        out.sort(key=lambda d: (d.id is None, d.id or 0, d.name))
        return out

    @contextlib.contextmanager
    def pinned(self, name: str, uuid: str | None):
        """Backend.pinned for xl: the UUID is verified when the block starts.

        xl addresses domains by name or domain id only, so the window between this check and
        the xl command is not closed as libvirt's by-UUID handles close it; it is narrowed
        from "since the request was checked" to one fork.
        """
        if uuid:
            try:
                now = self.lookup(name).uuid
            except NoSuchDomain:
                raise DomainChanged(name, uuid) from None
            if now and now.lower() != uuid.lower():
                raise DomainChanged(name, uuid)
        yield

    def lookup(self, name: str) -> DomainInfo:
        check_name(name)
        r = self._run(["list", "--", name])
        if r.returncode == 0:
            entries = parse_list(r.stdout)
            if not entries:
                raise BackendError("operation-failed", f"`xl list {name}` printed no domain")
            entry = entries[0]
            return self._running_info(entry, self._details(name).get(entry.domid))
        if any(s in f"{r.stderr}{r.stdout}" for s in _NOT_FOUND):
            cfg = self._config(name)
            if cfg is None:
                raise NoSuchDomain(name)
            return self._inactive_info(name, cfg)
        raise self._fail("look up", name, r)

    # -- life cycle -----------------------------------------------------------------------
    def start(self, name: str) -> None:
        path, _cfg = self._require_config(name)
        if self._running(name):
            raise BackendError("operation-failed", f"domain '{name}' is already running")
        self._xl("start", name, ["create", "--", str(path)], timeout=self.long_timeout)

    def shutdown(self, name: str) -> None:
        # -F: fall back to an ACPI power event for HVM guests without PV drivers (as virsh does)
        self._xl("shut down", check_name(name), ["shutdown", "-F", "--", name])

    def reboot(self, name: str) -> None:
        self._xl("reboot", check_name(name), ["reboot", "-F", "--", name])

    def reset(self, name: str) -> None:
        self._xl("reset", check_name(name), ["trigger", "--", name, "reset"])

    def destroy(self, name: str) -> None:
        self._xl("destroy", check_name(name), ["destroy", "--", name])
        self._forget_transient(name)

    def suspend(self, name: str) -> None:
        self._xl("suspend", check_name(name), ["pause", "--", name])

    def resume(self, name: str) -> None:
        self._xl("resume", check_name(name), ["unpause", "--", name])

    def _forget_transient(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._transient_path(name))

    # -- save / restore -------------------------------------------------------------------
    def save(self, name: str, path: str) -> None:
        check_name(name)
        _check_path(path, "save image")
        self._xl("save", name, ["save", "--", name, path], timeout=self.long_timeout)

    def _image_domain(self, path: str) -> XlDomain:
        _check_path(path, "save image")
        header = read_save_header(path)
        if isinstance(header.config, dict):
            dom = XlDomain.from_json({"config": header.config})
        elif isinstance(header.config, str):
            try:
                dom = XlDomain.from_config(XlConfig(header.config, f"{path} (config)"))
            except XlConfigError as exc:
                raise BackendError("invalid-arg", str(exc)) from None
        else:
            raise BackendError(
                "invalid-arg", f"'{path}' holds no domain config: cannot tell which domain it is"
            )
        check_name(dom.name)
        return dom

    def saved_image_xml(self, path: str) -> str:
        """Domain XML for a save image: name/uuid/resources from the image, our metadata
        (owner, label) from the config file of that name (the image cannot carry it)."""
        dom = self._image_domain(path)
        cfg = self._config(dom.name)
        if cfg is not None:
            _meta_into(dom, cfg)
        return dom.to_domain_xml()

    def restore(self, path: str) -> str:
        name = self._image_domain(path).name
        if self._running(name):
            raise BackendError("operation-failed", f"domain '{name}' is already running")
        self._xl("restore", name, ["restore", "--", path], timeout=self.long_timeout)
        return name

    # -- definitions ----------------------------------------------------------------------
    @staticmethod
    def _from_xml(xml: str) -> XlDomain:
        if not isinstance(xml, str) or not xml.lstrip().startswith("<"):
            raise BackendError(
                "invalid-arg",
                "the xl backend takes a libvirt-style domain XML; native xl configs go into "
                "the config directory directly",
            )
        dom = XlDomain.from_domain_xml(xml)
        check_name(dom.name)
        if not dom.uuid:
            dom.uuid = str(uuidlib.uuid4())
        return dom

    def define(self, xml: str) -> str:
        dom = self._from_xml(xml)
        path = self._cfg_path(dom.name)
        cfg = self._read_cfg(path)
        # an existing file keeps the settings we do not manage (comments, vnc, serial, ...)
        text = dom.to_config_text() if cfg is None else dom.apply_to(cfg).text
        self._write_file(path, text)
        return dom.name

    def undefine(self, name: str) -> None:
        path, _cfg = self._require_config(name)
        link = self.auto_dir / path.name
        if link.is_symlink() or link.exists():
            link.unlink()
        path.unlink()
        _fsync_dir(path.parent)

    def create(self, xml: str) -> str:
        dom = self._from_xml(xml)
        if self._running(dom.name):
            raise BackendError("operation-failed", f"domain '{dom.name}' already exists")
        self.transient_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._transient_path(dom.name)
        self._write_file(path, dom.to_config_text())
        try:
            self._xl("create", dom.name, ["create", "--", str(path)], timeout=self.long_timeout)
        except BackendError:
            self._forget_transient(dom.name)
            raise
        return dom.name

    def dumpxml(self, name: str, *, inactive: bool = False, security_info: bool = False) -> str:
        """Domain XML from the running domain (``xl list -l``) or from its config file.

        ``security_info`` changes nothing: secrets in a config (e.g. vncpasswd) are never
        put into the XML.
        """
        check_name(name)
        running = self._running(name)
        if running and not inactive:
            details = self._details(name)
            if details:
                domid, dom = next(iter(details.items()))
                found = self._any_config(name, running=True)
                if found is not None:
                    _meta_into(dom, found[1])
                return dom.to_domain_xml(domid)
        found = self._any_config(name, running=running)
        if found is None:
            if running:
                raise BackendError(
                    "operation-failed", f"cannot read the configuration of domain '{name}'"
                )
            raise NoSuchDomain(name)
        return XlDomain.from_config(found[1]).to_domain_xml()

    # -- resources ------------------------------------------------------------------------
    def _targets(self, name: str, live: bool, config: bool) -> tuple[bool, bool]:
        """(change the running domain, change the config) - neither given means current."""
        if not live and not config:
            return (True, False) if self._running(name) else (False, True)
        return live, config

    def _edit_config(self, name: str, edit: Callable[[XlConfig], None]) -> None:
        path, cfg = self._require_config(name)
        edit(cfg)
        self._save_cfg(path, cfg)

    def setmem(self, name: str, kib: int, *, live: bool = True, config: bool = False) -> None:
        check_name(name)
        _positive(kib, "memory size (KiB)")
        do_live, do_config = self._targets(name, live, config)
        if do_config:
            mib = _whole_mib(kib)

            def edit(cfg: XlConfig) -> None:
                maxmem = cfg.get("maxmem")
                if isinstance(maxmem, int) and mib > maxmem:
                    raise BackendError(
                        "invalid-arg",
                        f"cannot set memory of domain '{name}' to {mib} MiB: above its "
                        f"maximum ({maxmem} MiB)",
                    )
                cfg.set("memory", mib)

            self._edit_config(name, edit)
        if do_live:
            self._xl("change the memory of", name, ["mem-set", "--", name, _size_arg(kib)])

    def setmaxmem(self, name: str, kib: int, *, config: bool = True) -> None:
        check_name(name)
        _positive(kib, "memory size (KiB)")
        if config:
            mib = _whole_mib(kib)
            self._edit_config(name, lambda cfg: cfg.set("maxmem", mib))
        else:
            self._xl("change the maximum memory of", name, ["mem-max", "--", name, _size_arg(kib)])

    def setvcpus(self, name: str, count: int, *, live: bool = True, config: bool = False) -> None:
        check_name(name)
        _positive(count, "vCPU count")
        do_live, do_config = self._targets(name, live, config)
        if do_config:

            def edit(cfg: XlConfig) -> None:
                maxv = cfg.get("maxvcpus")
                if isinstance(maxv, int) and count > maxv:
                    raise BackendError(
                        "invalid-arg",
                        f"cannot give domain '{name}' {count} vCPUs: its maximum is {maxv}",
                    )
                cfg.set("vcpus", count)

            self._edit_config(name, edit)
        if do_live:
            self._xl("change the vCPUs of", name, ["vcpu-set", "--", name, str(count)])

    # -- devices --------------------------------------------------------------------------
    def attach_disk(
        self,
        name: str,
        source: str,
        target: str,
        *,
        driver: str | None = None,
        subdriver: str | None = None,
        type: str = "file",
        mode: str | None = None,
        live: bool = True,
        config: bool = False,
    ) -> None:
        """``xl block-attach -- NAME 'format=F,vdev=T,access=A,target=SOURCE'`` (live) and/or a
        new entry in the config's disk list.  ``driver`` has no xl meaning and is ignored."""
        check_name(name)
        domxml.check_target(target)
        if type not in ("file", "block"):
            raise BackendError("invalid-arg", f"invalid disk type {type!r}: use file or block")
        if mode not in (None, "readonly", "shareable"):
            raise BackendError("invalid-arg", f"invalid disk mode {mode!r}")
        if mode == "shareable":
            raise BackendError("unsupported", "the xl backend cannot attach shareable disks")
        if not isinstance(source, str) or not source or "\n" in source or "\x00" in source:
            raise BackendError("invalid-arg", f"invalid disk source {source!r}")
        fmt = subdriver or "raw"
        if not _FORMAT.match(fmt):
            raise BackendError("invalid-arg", f"invalid disk format {fmt!r}")
        disk = XlDisk(
            vdev=target,
            target=source,
            format=fmt,
            readonly=mode == "readonly",
            block=type == "block",
        )
        do_live, do_config = self._targets(name, live, config)
        if do_config:

            def edit(cfg: XlConfig) -> None:
                dom = XlDomain.from_config(cfg)
                if any(d.vdev == target for d in dom.disks):
                    raise BackendError(
                        "operation-failed",
                        f"cannot attach a disk to domain '{name}': target {target} already exists",
                    )
                dom.disks.append(disk)
                dom.write_devices(cfg)

            self._edit_config(name, edit)
        if do_live:
            self._xl("attach a disk to", name, ["block-attach", "--", name, disk.spec()])

    def detach_disk(
        self, name: str, target: str, *, live: bool = True, config: bool = False
    ) -> None:
        check_name(name)
        domxml.check_target(target)
        do_live, do_config = self._targets(name, live, config)
        if do_config:

            def edit(cfg: XlConfig) -> None:
                dom = XlDomain.from_config(cfg)
                kept = [d for d in dom.disks if d.vdev != target]
                if len(kept) == len(dom.disks):
                    raise BackendError(
                        "operation-failed", f"domain '{name}' has no disk with target '{target}'"
                    )
                dom.disks = kept
                dom.write_devices(cfg)

            self._edit_config(name, edit)
        if do_live:
            self._xl("detach a disk from", name, ["block-detach", "--", name, target])

    @staticmethod
    def _check_itype(itype: str) -> None:
        if itype != "bridge":
            raise BackendError(
                "unsupported",
                f"the xl backend cannot use interface type {itype!r}: Xen has no libvirt "
                "networks, attach to a bridge (type bridge, source = bridge name)",
            )

    def attach_interface(
        self,
        name: str,
        itype: str,
        source: str,
        *,
        mac: str | None = None,
        model: str | None = None,
        live: bool = True,
        config: bool = False,
    ) -> None:
        check_name(name)
        self._check_itype(itype)
        if not isinstance(source, str) or not _BRIDGE.match(source):
            raise BackendError("invalid-arg", f"invalid bridge name {source!r}")
        if model is not None and not re.match(r"^[A-Za-z0-9_-]{1,32}\Z", model):
            raise BackendError("invalid-arg", f"invalid interface model {model!r}")
        nic = XlNic(bridge=source, mac=domxml.check_mac(mac) if mac else None, model=model)
        do_live, do_config = self._targets(name, live, config)
        if do_config:

            def edit(cfg: XlConfig) -> None:
                dom = XlDomain.from_config(cfg)
                if nic.mac and any(n.mac == nic.mac for n in dom.nics):
                    raise BackendError(
                        "operation-failed",
                        f"domain '{name}' already has an interface with MAC {nic.mac}",
                    )
                dom.nics.append(nic)
                dom.write_devices(cfg)

            self._edit_config(name, edit)
        if do_live:
            self._xl(
                "attach an interface to", name, ["network-attach", "--", name, *nic.spec_parts()]
            )

    def detach_interface(
        self,
        name: str,
        itype: str,
        *,
        mac: str | None = None,
        live: bool = True,
        config: bool = False,
    ) -> None:
        check_name(name)
        self._check_itype(itype)
        mac = domxml.check_mac(mac) if mac else None
        do_live, do_config = self._targets(name, live, config)
        if do_config:

            def edit(cfg: XlConfig) -> None:
                dom = XlDomain.from_config(cfg)
                victim = _pick_nic(name, dom.nics, mac)
                dom.nics = [n for n in dom.nics if n is not victim]
                dom.write_devices(cfg)

            self._edit_config(name, edit)
        if do_live:
            live_mac = mac
            if live_mac is None:
                details = self._details(name)
                nics = next(iter(details.values())).nics if details else []
                live_mac = _pick_nic(name, nics, None).mac
                if not live_mac:
                    raise BackendError(
                        "operation-failed", f"cannot tell the MAC address of '{name}'s interface"
                    )
            self._xl("detach an interface from", name, ["network-detach", "--", name, live_mac])

    def disk_sources(self, name: str) -> list[str]:
        return [d.target for d in self._current(name).disks if d.target]

    def interface_sources(self, name: str) -> list[tuple[str, str]]:
        return [("bridge", n.bridge) for n in self._current(name).nics]

    def _current(self, name: str) -> XlDomain:
        """The running domain's devices if it runs, else its config's."""
        check_name(name)
        if self._running(name):
            details = self._details(name)
            if details:
                return next(iter(details.values()))
        found = self._any_config(name, running=False)
        if found is None:
            raise NoSuchDomain(name)
        return XlDomain.from_config(found[1])

    # -- migration ------------------------------------------------------------------------
    def migrate(
        self,
        name: str,
        dest_uri: str,
        *,
        live: bool = False,
        persistent: bool = False,
        undefine_source: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """``xl migrate -- NAME HOST`` (xl migrations are always live; ``live`` is accepted).

        HOST comes from ``dest_uri`` ("host", "xen+ssh://host/", "ssh://host") and must be a
        plain DNS name or IPv4 address: xl runs ``sh -c "ssh HOST xl migrate-receive"``.
        progress gets (0, memory) before and (memory, memory) after; xl reports nothing
        in between that we could read reliably.
        """
        check_name(name)
        host = migrate_host(dest_uri)
        if persistent:
            raise BackendError(
                "unsupported",
                "xl cannot define the domain on the destination (--persistent): copy its "
                "config file there after migrating",
            )
        info = self.lookup(name)
        if info.id is None:
            raise BackendError("operation-failed", f"domain '{name}' is not running")
        total = info.mem_kib * 1024
        progress = report_progress(progress, 0, total)
        self._xl("migrate", name, ["migrate", "--", name, host], timeout=self.long_timeout)
        report_progress(progress, total, total)
        if undefine_source and self._cfg_path(name).exists():
            self.undefine(name)

    # -- autostart ------------------------------------------------------------------------
    def _autostart_link(self, name: str) -> bool:
        link = self.auto_dir / f"{name}.cfg"
        return link.is_symlink() or link.exists()

    def get_autostart(self, name: str) -> bool:
        check_name(name)
        if self._config(name) is None and not self._running(name):
            raise NoSuchDomain(name)
        return self._autostart_link(name)

    def set_autostart(self, name: str, flag: bool) -> None:
        """xendomains' convention: a symlink <config dir>/auto/NAME.cfg -> ../NAME.cfg."""
        path, _cfg = self._require_config(name)
        link = self.auto_dir / path.name
        if not flag:
            if link.is_symlink() or link.exists():
                link.unlink()
            return
        self.auto_dir.mkdir(mode=0o755, exist_ok=True)
        self._check_trusted(self.auto_dir, os.stat(self.auto_dir), directory=True)
        tmp = self.auto_dir / f".{path.name}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(path, tmp)
        os.replace(tmp, link)
        _fsync_dir(self.auto_dir)

    # -- snapshots: not in xl -------------------------------------------------------------
    def _no_snapshots(self, name: str):
        check_name(name)
        return BackendError(
            "unsupported",
            f"cannot snapshot domain '{name}': xl has no snapshots (use save/restore, or "
            "snapshots of the disks' storage)",
        )

    def snapshot_create_as(
        self, name: str, snap_name: str | None = None, description: str | None = None
    ) -> str:
        raise self._no_snapshots(name)

    def snapshot_list(self, name: str) -> list[SnapshotInfo]:
        raise self._no_snapshots(name)

    def snapshot_revert(self, name: str, snap: str) -> None:
        raise self._no_snapshots(name)

    def snapshot_delete(self, name: str, snap: str) -> None:
        raise self._no_snapshots(name)

    # -- metadata -------------------------------------------------------------------------
    def get_metadata(self, name: str, ns_uri: str) -> str | None:
        """Our <vm> element built from svirt_owner/access_control (None if neither is set)."""
        check_name(name)
        running = self._running(name)
        found = self._any_config(name, running=running)
        if found is None:
            if running:
                return None
            raise NoSuchDomain(name)
        if ns_uri != SVIRT_NS:
            return None
        dom = XlDomain(name=name)
        _meta_into(dom, found[1])
        return dom.metadata_xml()

    def set_metadata(
        self,
        name: str,
        xml_fragment: str | None,
        key: str,
        ns_uri: str,
        *,
        live: bool = True,
        config: bool = True,
    ) -> None:
        """Write owner/label into the config file (the only place xl keeps them; the flags
        make no difference: a running domain reads its label from there too)."""
        check_name(name)
        if ns_uri != SVIRT_NS:
            raise BackendError(
                "unsupported",
                f"the xl backend keeps metadata only in secured-virt's namespace ({SVIRT_NS})",
            )
        running = self._running(name)
        found = self._any_config(name, running=running)
        if found is None:
            if running:
                raise BackendError(
                    "unsupported",
                    f"domain '{name}' has no config file in {self.config_dir}: define it "
                    "before labelling it",
                )
            raise NoSuchDomain(name)
        path, cfg = found
        dom = XlDomain(name=name)
        if xml_fragment is not None:
            root = domxml.parse(xml_fragment)
            qn = etree.QName(root)
            if qn.localname != "vm" or qn.namespace not in (None, SVIRT_NS):
                raise BackendError(
                    "invalid-arg",
                    f"expected secured-virt's <vm> metadata element, got <{qn.localname}>",
                )
            dom.set_metadata_element(root)
        dom.write_metadata(cfg)
        self._save_cfg(path, cfg)

    # -- console, host --------------------------------------------------------------------
    def console_argv(self, name: str) -> list[str]:
        """The command that attaches a terminal to the domain's console (run as root)."""
        return [self.xl_path, "console", "--", check_name(name)]

    def open_console(self, name: str):
        check_name(name)
        raise BackendError(
            "unsupported",
            f"cannot open the console of domain '{name}' through the xl backend: run "
            f"`{' '.join(self.console_argv(name))}` as root",
        )

    def hostinfo(self) -> dict:
        info = parse_info(self._xl("read host information from", None, ["info"]))

        def num(key: str) -> int:
            try:
                return int(float(info.get(key, "0")))
            except ValueError:
                return 0

        cores, threads, cpus = num("cores_per_socket"), num("threads_per_core"), num("nr_cpus")
        return {
            "backend": self.name,
            "uri": self.uri,
            "hostname": info.get("host", ""),
            "hypervisor": "Xen",
            "hypervisor_version": info.get("xen_version", ""),
            "cpu_model": info.get("machine", ""),
            "memory_kib": num("total_memory") * 1024,
            "free_memory_kib": num("free_memory") * 1024,
            "cpus": cpus,
            "mhz": num("cpu_mhz"),
            "numa_nodes": num("nr_nodes"),
            "sockets": cpus // (cores * threads) if cores and threads else 0,
            "cores": cores,
            "threads": threads,
            "scheduler": info.get("xen_scheduler", ""),
        }

    def close(self) -> None:
        """Nothing to close: every call is its own xl process."""


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


def _pick_nic(name: str, nics: list[XlNic], mac: str | None) -> XlNic:
    if mac:
        for n in nics:
            if (n.mac or "").lower() == mac:
                return n
        raise BackendError("operation-failed", f"domain '{name}' has no interface with MAC {mac}")
    if not nics:
        raise BackendError("operation-failed", f"domain '{name}' has no bridge interface")
    if len(nics) > 1:
        raise BackendError(
            "invalid-arg",
            f"domain '{name}' has {len(nics)} bridge interfaces: give the MAC address (--mac) "
            "of the one to detach",
        )
    return nics[0]


def _meta_into(dom: XlDomain, cfg: XlConfig) -> None:
    owner = cfg.get("svirt_owner")
    dom.owner = owner if isinstance(owner, str) and owner else None
    if "access_control" in cfg:
        dom.label_policy, dom.label = parse_label(cfg.get("access_control"))


def _whole_mib(kib: int) -> int:
    if kib % 1024:
        raise BackendError(
            "invalid-arg",
            f"xl configs hold memory in MiB: {kib} KiB is not a whole number of MiB",
        )
    return kib // 1024


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
