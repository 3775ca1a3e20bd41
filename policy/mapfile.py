"""The ``.map`` text Xen's tools wrote next to a binary policy, and a reader for it.

Why: the map is how Domain-0 tools translated label names into ssidrefs (``label2ssidref``)
and how ``xm labels`` listed labels; administrators still read it to see which number a label
got.  Format: one record per line, whitespace-separated, keywords as in Xen 3.3 (including
its ``POLICFILE`` spelling).  ssids and counts are hexadecimal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .compiled import CompiledPolicy
from .constants import ACM_MAGIC, NULL_LABEL, UNLABELED


def build_map(c: CompiledPolicy, xml_path: str, bin_path: str) -> str:
    ssid0 = UNLABELED if c.policy.vm_label(UNLABELED) else NULL_LABEL
    out = [
        f"POLICYREFERENCENAME    {c.name}",
        f"MAGIC                  {ACM_MAGIC:08x}",
        f"POLICFILE              {xml_path}",
        f"BINARYFILE             {bin_path}",
        f"MAX-CHWALL-TYPES       {len(c.chwall_type_order):08x}",
        f"MAX-CHWALL-SSIDS       {len(c.chwall_matrix):08x}",
        f"MAX-CHWALL-LABELS      {len(c.chwall_matrix):08x}",
        f"MAX-STE-TYPES          {len(c.ste_type_order):08x}",
        f"MAX-STE-SSIDS          {len(c.ste_matrix):08x}",
        f"MAX-STE-LABELS         {len(c.ste_matrix):08x}",
        "PRIMARY                CHWALL",
        "SECONDARY              STE",
        "",
    ]
    width = max([len(n) for n in (*c.vm_order, *c.res_order, ssid0)] + [16])
    for comp in ("CHWALL", "STE"):
        out.append(f"LABEL->SSID ANY {comp:6} {ssid0:{width}} {0:x}")
        for idx, name in enumerate(c.vm_order[1:], start=1):
            out.append(f"LABEL->SSID VM  {comp:6} {name:{width}} {idx:x}")
        if comp == "STE":
            base = len(c.vm_order)
            for i, name in enumerate(c.res_order):
                out.append(f"LABEL->SSID RES {comp:6} {name:{width}} {base + i:x}")
    out.append("")
    for comp, matrix, types in (
        ("CHWALL", c.chwall_matrix, c.chwall_type_order),
        ("STE", c.ste_matrix, c.ste_type_order),
    ):
        for ssid, row in enumerate(matrix):
            names = " ".join(types[i] for i, bit in enumerate(row) if bit)
            out.append(f"SSID->TYPE {comp:6} {ssid:08x} {names}".rstrip())
    out.append("")
    for comp, types in (("CHWALL", c.chwall_type_order), ("STE", c.ste_type_order)):
        for col, t in enumerate(types):
            out.append(f"TYPE {comp:6} {t:{width}} {col:x}")
    return "\n".join(out) + "\n"


@dataclass
class MapFile:
    """A parsed map: header keywords and label -> ssid per (kind, component)."""

    header: dict[str, str] = field(default_factory=dict)
    labels: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    types: dict[str, dict[str, int]] = field(default_factory=dict)

    def label2ssidref(self, label: str, kind: str = "dom") -> int:
        """Xen's label2ssidref: VM ('dom') or resource ('res') label -> ``sec << 16 | pri``."""
        kinds = ("ANY", "VM") if kind == "dom" else ("ANY", "RES")
        found: dict[str, int] = {}
        for k in kinds:
            for comp in ("CHWALL", "STE"):
                ssid = self.labels.get((k, comp), {}).get(label)
                if ssid is not None:
                    found[comp] = ssid
        if not found:
            raise KeyError(f"label {label!r} is not in the map")
        pri = found.get(self.header.get("PRIMARY", "CHWALL"), 0)
        sec_name = self.header.get("SECONDARY", "STE")
        if sec_name == "NULL":
            return pri
        return (found.get(sec_name, 0) << 16) | pri

    def label_names(self, kind: str = "dom") -> list[str]:
        """Like ``xm labels``: the label names of one kind, sorted, without __NULL_LABEL__."""
        kinds = {"dom": ("VM",), "res": ("RES",), "any": ("VM", "RES", "ANY")}[kind]
        names = {n for (k, _c), m in self.labels.items() if k in kinds for n in m}
        names.discard(NULL_LABEL)
        return sorted(names)


def parse_map(text: str) -> MapFile:
    m = MapFile()
    for raw in text.splitlines():
        f = raw.split()
        if not f:
            continue
        if f[0] == "LABEL->SSID" and len(f) == 5:
            m.labels.setdefault((f[1], f[2]), {})[f[3]] = int(f[4], 16)
        elif f[0] == "TYPE" and len(f) == 4:
            m.types.setdefault(f[1], {})[f[2]] = int(f[3], 16)
        elif f[0] == "SSID->TYPE":
            continue
        elif len(f) == 2:
            m.header[f[0]] = f[1]
    return m
