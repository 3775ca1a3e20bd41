"""Where the XSM API keeps labels of VMs, resources (VBD backings) and VIFs.

Why pluggable: the XSM API needs somewhere to keep labels (xend kept them in VM configs and a
resource-label file); the front-end may prefer to keep VM labels on the real domains (libvirt
metadata).  Anything with these four methods can be passed to XsmHost.  The default keeps one
JSON file in the state directory, rewritten atomically.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from typing import Protocol

from ..errors import Xserr, XsmError
from ..safefile import atomic_write, read_trusted

KINDS = ("vm", "resource", "vif")
MAX_LABEL_FILE = 16 * 1024 * 1024


class LabelStore(Protocol):
    def get(self, kind: str, key: str) -> str | None: ...

    def set(self, kind: str, key: str, value: str | None) -> None: ...

    def items(self, kind: str) -> dict[str, str]: ...

    def update(self, changes: Mapping[str, Mapping[str, str | None]]) -> None:
        """Apply many changes at once ({kind: {key: value or None}}), all or nothing."""


class JsonLabelStore:
    """Labels in ``<state>/labels.json``: ``{"vm": {...}, "resource": {...}, "vif": {...}}``."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()

    def _read(self) -> dict[str, dict[str, str]]:
        if not os.path.lexists(self.path):
            return {k: {} for k in KINDS}
        raw = read_trusted(self.path, MAX_LABEL_FILE)
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise XsmError(
                Xserr.FILE_ERROR, f"{self.path} is not valid JSON ({exc}); restore it from backup"
            ) from None
        if not isinstance(data, dict):
            raise XsmError(Xserr.FILE_ERROR, f"{self.path}: expected a JSON object")
        return {k: {str(a): str(b) for a, b in dict(data.get(k, {})).items()} for k in KINDS}

    def _write(self, data: dict[str, dict[str, str]]) -> None:
        text = json.dumps({k: dict(sorted(data[k].items())) for k in KINDS}, indent=1)
        atomic_write(self.path, text + "\n", 0o644)

    def get(self, kind: str, key: str) -> str | None:
        with self._lock:
            return self._read()[kind].get(key)

    def items(self, kind: str) -> dict[str, str]:
        with self._lock:
            return dict(self._read()[kind])

    def set(self, kind: str, key: str, value: str | None) -> None:
        self.update({kind: {key: value}})

    def update(self, changes: Mapping[str, Mapping[str, str | None]]) -> None:
        with self._lock:
            data = self._read()
            for kind, entries in changes.items():
                for key, value in entries.items():
                    if value is None:
                        data[kind].pop(key, None)
                    else:
                        data[kind][key] = value
            self._write(data)
