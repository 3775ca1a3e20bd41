"""Labels bound to UUIDs: a domain's sHype/ACM label outlives its definition.

Why: a label lives in the domain's own metadata, so ``undefine`` followed by ``define`` of the
same XML (same UUID, metadata stripped as for every caller's XML) used to bring the VM back
unlabelled, and it then ran beside its Chinese Wall competitor.  So every label written to a
domain is recorded here by UUID (with the owner and name it had), the record survives the
definition, and the service applies it when a domain with that UUID is defined or created
again.  A record is only ever replaced by a newer label for the same UUID (or dropped when root
removes the label): labels stay bound to the UUID.

One JSON file in the ACM state directory (root's, 0600), replaced atomically; an unreadable
file is an error, never an empty record (fail closed: a lost record is a lost label).
"""

from __future__ import annotations

import json
import os
import threading

from secured_virt.confinement import vmmeta
from secured_virt.fsutil import atomic_write

FILE = "uuid-labels.json"


class BoundLabelsError(Exception):
    pass


class BoundLabels:
    def __init__(self, state_dir: str):
        self.path = os.path.join(state_dir, FILE)
        self._lock = threading.Lock()

    def _load(self) -> dict:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise BoundLabelsError(f"cannot read {self.path}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if st.st_uid != 0 or st.st_mode & 0o022:
                raise BoundLabelsError(
                    f"{self.path} must be root's and not group/world-writable; refusing to "
                    "trust the labels it records"
                )
            try:
                data = json.loads(fh.read(8 * 1024 * 1024))
            except ValueError as exc:
                raise BoundLabelsError(f"{self.path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise BoundLabelsError(f"{self.path}: expected an object of UUID -> label")
        return data

    def get(self, uuid: str | None) -> tuple[str, vmmeta.VmMeta] | None:
        """(name it had, metadata) recorded for ``uuid``, or None."""
        if not uuid:
            return None
        rec = self._load().get(uuid.lower())
        if not isinstance(rec, dict) or not rec.get("label"):
            return None
        meta = vmmeta.VmMeta(
            owner=rec.get("owner") or None,
            label_policy=rec.get("policy") or None,
            label=rec["label"],
            realm=rec.get("realm") or None,
        )
        return str(rec.get("name") or ""), meta

    def bind(self, uuid: str, name: str, meta: vmmeta.VmMeta) -> None:
        """Record ``meta``'s label for ``uuid`` (no label: drop the record)."""
        with self._lock:
            data = self._load()
            key = uuid.lower()
            if meta.label:
                rec = {
                    "name": name,
                    "owner": meta.owner,
                    "policy": meta.label_policy,
                    "label": meta.label,
                }
                if meta.realm:  # the realm stays bound with the label (secured_virt.tenancy)
                    rec["realm"] = meta.realm
                if data.get(key) == rec:
                    return
                data[key] = rec
            elif key in data:
                del data[key]
            else:
                return
            atomic_write(self.path, json.dumps(data, indent=1, sort_keys=True) + "\n", mode=0o600)
