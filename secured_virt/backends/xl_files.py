"""The xl backend's config files: where they live, which ones are trusted, how they are written.

xl has no persistent "defined" domains; like libvirt's libxl driver we keep one config file
per domain, ``<xl_config_dir>/<name>.cfg`` (xl.cfg(5)).  A transient domain (``create``)
gets its file in ``xl_transient_dir``; autostart is xendomains' convention, a symlink in
``<xl_config_dir>/auto``.

These files decide what xl runs and carry the domain's ACM label, so they are read only when
they are a regular file, not a symlink, owned by root (or by the user running the backend)
and not writable by group or others, and written atomically (temp file in the same directory,
fsync, rename) into a directory passing the same test.  Everything here is plain file work:
this module never runs xl, so it can be read and tested without a hypervisor in mind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .base import BackendError
from .xl_args import check_name, looks_like_name
from .xl_cfg import MAX_CONFIG_BYTES, XlConfig, XlConfigError

DEFAULT_CONFIG_DIR = "/etc/xen"
DEFAULT_TRANSIENT_DIR = "/run/secured-virt/xl"


class XlConfigFiles:
    """The config directory, the autostart directory and the transient directory of one
    backend (part of XlBackend; see xl_core for the part that runs xl)."""

    def __init__(
        self,
        *,
        xl_config_dir: str = DEFAULT_CONFIG_DIR,
        xl_auto_dir: str | None = None,
        xl_transient_dir: str = DEFAULT_TRANSIENT_DIR,
    ) -> None:
        for what, d in (("xl_config_dir", xl_config_dir), ("xl_transient_dir", xl_transient_dir)):
            if "=" in d or not os.path.isabs(d):
                # `xl create` takes any operand containing '=' for a config *setting*
                raise BackendError(
                    "invalid-arg", f"{what} {d!r} must be an absolute path without '='"
                )
        self.config_dir = Path(xl_config_dir)
        self.auto_dir = Path(xl_auto_dir) if xl_auto_dir else self.config_dir / "auto"
        self.transient_dir = Path(xl_transient_dir)
        self._trusted_uids = {0, os.geteuid()}

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
        with replacing(path, ".tmp") as fh:
            fh.write(text.encode("utf-8"))
            os.fchmod(fh.fileno(), 0o644)
        fsync_dir(directory)

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
            if not stem or not looks_like_name(stem):
                continue
            try:
                cfg = self._read_cfg(Path(entry.path))
            except BackendError:
                continue  # a broken file is reported by lookup/start of that name
            if cfg is not None and cfg.get("name") == stem:
                names.append(stem)
        return sorted(names)

    def _remove_config(self, path: Path) -> None:
        """Delete a domain's config file and its autostart link (undefine)."""
        link = self.auto_dir / path.name
        if link.is_symlink() or link.exists():
            link.unlink()
        path.unlink()
        fsync_dir(path.parent)

    def _forget_transient(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._transient_path(name))

    # -- autostart ------------------------------------------------------------------------
    def _autostart_link(self, name: str) -> bool:
        link = self.auto_dir / f"{name}.cfg"
        return link.is_symlink() or link.exists()

    def _set_autostart_link(self, path: Path, flag: bool) -> None:
        """xendomains' convention: a symlink <config dir>/auto/NAME.cfg -> ../NAME.cfg."""
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
        fsync_dir(self.auto_dir)


@contextlib.contextmanager
def replacing(path: str | Path, suffix: str) -> Iterator[BinaryIO]:
    """Replace the file at ``path`` with what the block writes to the binary file it gets.

    Why one helper: a crash or a failure half-way must leave the old file whole, so the new
    one is written to ``.<name>.XXXXXXXX<suffix>`` in the same directory (a rename is atomic
    only within one filesystem), flushed and fsynced, and renamed over ``path`` only when the
    block finished; on any failure, the temporary file is removed and the error raised.  The
    block sets the mode (and owner) on ``fh.fileno()``; the directory's fsync is the
    caller's (``fsync_dir``), for the callers that need the rename itself durable."""
    directory, base = os.path.split(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=suffix, dir=directory or ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
