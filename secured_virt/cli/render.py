"""Turn a Reply's structured data into what virsh would print (or JSON).

Rendering happens in the client process, so output is byte-for-byte the same whether the
request ran in-process (direct mode) or inside svirtd.  Standard library only: this is on the
fast client path.
"""

from __future__ import annotations

from secured_virt.sizes import pretty


def _width(text: str) -> int:
    """Columns ``text`` takes on a terminal, as vshTable counts them (wcswidth)."""
    if text.isascii():
        return len(text)
    import unicodedata  # only for non-ASCII cells: the client's start-up path stays lean

    return sum(
        0
        if unicodedata.combining(ch)
        else 2
        if unicodedata.east_asian_width(ch) in ("W", "F")
        else 1
        for ch in text
    )


def table(headers: list[str], rows: list[list[str]]) -> str:
    """virsh's vshTable layout: each cell after one space, every column but the last padded
    to its widest cell plus two spaces (so columns are three apart and no line ends in
    padding), and a rule of dashes as wide as the columns plus three each."""
    widths = [_width(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], _width(cell))

    def line(cells: list[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            out.append(" " + cell)
            if i < len(cells) - 1:
                out.append(" " * (widths[i] - _width(cell) + 2))
        return "".join(out)

    out = [line(headers), "-" * (sum(widths) + 3 * len(widths))]
    out += [line(r) for r in rows]
    return "\n".join(out) + "\n"


def _kv(pairs: list[tuple[str, object]], width: int = 16) -> str:
    """virsh's ``%-15s %s`` lines: the key and its colon padded to 15, then one space."""
    return "".join(f"{(k + ':').ljust(width - 1)} {'' if v is None else v}\n" for k, v in pairs)


def _yn(flag: bool) -> str:
    return "yes" if flag else "no"


def _id(d: dict) -> str:
    return "-" if d.get("id") is None else str(d["id"])


def render_list(data: dict, args: dict) -> str:
    """virsh list: --uuid, --id and --name print those fields of each domain on one line (in
    that order, space-separated; --id alone skips inactive domains), otherwise the table,
    with the Title column for --title and svirsh's ACM-Label column for --label."""
    doms = data.get("domains", [])
    if args.get("format") == "sxp":
        return "".join(render_sxp(d) for d in doms)
    if args.get("long"):
        return "\n".join(render_dominfo(d) for d in doms)
    if args.get("name") or args.get("uuid") or args.get("id"):
        lines = []
        for d in doms:
            if (
                args.get("id")
                and d.get("id") is None
                and not (args.get("name") or args.get("uuid"))
            ):
                continue
            fields = []
            if args.get("uuid"):
                fields.append(d["uuid"])
            if args.get("id"):
                fields.append(_id(d))
            if args.get("name"):
                fields.append(d["name"])
            lines.append(" ".join(fields) + "\n")
        return "".join(lines) + "\n"
    headers = ["Id", "Name", "State"]
    if args.get("title"):
        headers.append("Title")
    if args.get("label"):  # xm list --label's columns (seed 001), xm's units
        headers += ["Mem(MiB)", "VCPUs", "Time(s)", "ACM-Label"]
    if args.get("svirt"):  # sVirt's label beside the ACM one: category pair, DAC uid
        headers.append("sVirt-Label")
    realms = any(d.get("realm") for d in doms)  # a host with realms: which tenant's VM
    if realms:
        headers.append("Realm")
    rows = []
    for d in doms:
        row = [_id(d), d["name"], d["state"]]
        if args.get("title"):
            row.append(d.get("title") or "")
        if args.get("label"):
            row += [
                str(d.get("mem_kib", 0) // 1024),
                str(d.get("vcpus", 0)),
                f"{d.get('cpu_time_ns', 0) / 1e9:.1f}",
                d.get("acm_label") or "",
            ]
        if args.get("svirt"):
            row.append(d.get("svirt_label") or "-")
        if realms:
            row.append(d.get("realm") or "-")
        rows.append(row)
    return table(headers, rows) + "\n"


#: xm's six state letters (r b p s c d) for virsh's state words
_XM_STATE = {
    "running": "r-----",
    "idle": "-b----",
    "blocked": "-b----",
    "paused": "--p---",
    "pmsuspended": "--p---",
    "in shutdown": "---s--",
    "crashed": "----c-",
    "dying": "-----d",
}


def _sxp_atom(value: object) -> str:
    """One sxp atom as xen.xend.sxp writes it: bare when it needs no quoting, else in single
    quotes with backslash escapes."""
    text = str(value)
    if text and not any(c.isspace() or c in "()'\"\\;" for c in text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _sxp(node, indent: int = 0) -> str:
    """An s-expression, xm's PrettyPrint way: a list of atoms on one line, a list holding
    lists with each child on its own line, four spaces deeper."""
    if not isinstance(node, list):
        return _sxp_atom(node)
    if not any(isinstance(n, list) for n in node):
        return "(" + " ".join(_sxp_atom(n) for n in node) + ")"
    pad = " " * (indent + 4)
    head = [n for n in node[:1] if not isinstance(n, list)]
    rest = node[len(head) :]
    inner = "\n".join(pad + _sxp(n, indent + 4) for n in rest)
    return "(" + " ".join(_sxp_atom(n) for n in head) + "\n" + inner + "\n" + " " * indent + ")"


def render_sxp(d: dict) -> str:
    """``xm list --long`` for one domain: its ``(domain ...)`` s-expression, with seed 001's
    security subtree ``(security ((acm_label (labelname L) (policyname P)) (ssidref N)))``
    (left out when the caller may not see the label, as in list --long)."""
    node: list = ["domain"]
    if d.get("id") is not None:
        node.append(["domid", d["id"]])
    node += [
        ["uuid", d.get("uuid", "")],
        ["vcpus", d.get("vcpus", 0)],
        ["memory", d.get("mem_kib", 0) // 1024],
        ["maxmem", d.get("max_mem_kib", 0) // 1024],
        ["name", d["name"]],
    ]
    sec = d.get("security")
    if sec:
        inner: list = []
        if sec.get("label"):
            inner.append(
                ["acm_label", ["labelname", sec["label"]], ["policyname", sec.get("policy") or ""]]
            )
        if sec.get("ssidref") is not None:
            inner.append(["ssidref", sec["ssidref"]])
        if inner:
            node.append(["security", inner])
    node += [
        ["state", _XM_STATE.get(d.get("state", ""), "------")],
        ["cpu_time", f"{d.get('cpu_time_ns', 0) / 1e9:.1f}"],
    ]
    if d.get("owner"):
        node.append(["svirt_owner", d["owner"]])
    return _sxp(node) + "\n"


def render_save_list(d: dict) -> str:
    """The caller's save images, in virsh's table style (``snapshot-list``'s layout)."""
    rows = [[i["file"], i.get("domain") or "-", str(i["bytes"]), i["saved"]] for i in d["images"]]
    return table(["File", "Domain", "Bytes", "Saved"], rows) + "\n"


def render_dominfo(d: dict) -> str:
    """virsh dominfo's lines, in virsh's order and spelling; svirsh's own (Owner, the sHype/ACM
    label) come after them, under names virsh does not use."""
    pairs = [
        ("Id", _id(d)),
        ("Name", d["name"]),
        ("UUID", d.get("uuid", "")),
        ("OS Type", d.get("os_type", "")),
        ("State", d.get("state", "")),
        ("CPU(s)", d.get("vcpus", "")),
    ]
    if d.get("cpu_time_ns"):  # virsh prints it whenever libvirt reports a non-zero time
        pairs.append(("CPU time", f"{d['cpu_time_ns'] / 1e9:.1f}s"))
    max_mem = d.get("max_mem_kib", 0)
    pairs += [
        ("Max memory", "no limit" if max_mem == 0xFFFFFFFF else f"{max_mem} KiB"),
        ("Used memory", f"{d.get('mem_kib', 0)} KiB"),
        ("Persistent", _yn(d.get("persistent", False))),
        ("Autostart", "enable" if d.get("autostart") else "disable"),
    ]
    managed = d.get("managed_save")
    if managed is not None:
        pairs.append(("Managed save", managed if isinstance(managed, str) else _yn(managed)))
    if d.get("security_model"):
        pairs += [
            ("Security model", d["security_model"]),
            ("Security DOI", d.get("security_doi") or ""),
        ]
        if d.get("security_label"):
            mode = "enforcing" if d.get("security_enforcing") else "permissive"
            pairs.append(("Security label", f"{d['security_label']} ({mode})"))
    if d.get("owner"):
        pairs.append(("Owner", d["owner"]))
    if d.get("realm"):
        pairs.append(("Realm", d["realm"]))
    sec = d.get("security")
    if sec:
        pairs += [
            ("ACM label", sec.get("display") or ""),
            ("Label name", sec.get("label") or ""),
            ("Policy name", sec.get("policy") or ""),
        ]
        if sec.get("ssidref") is not None:
            pairs.append(("ssidref", f"0x{sec['ssidref']:08x} ({sec['ssidref']})"))
    if d.get("svirt_categories"):
        pairs.append(("sVirt categories", d["svirt_categories"]))
    if d.get("dac_label"):
        pairs.append(("DAC label", d["dac_label"]))
    if d.get("selinux"):
        pairs.append(("SELinux", d["selinux"]))
    return _kv(pairs) + "\n"


def _creation(s: dict) -> str:
    """virsh's creation time: the client's local time, ``%Y-%m-%d %H:%M:%S %z``."""
    if s.get("creation_time") is None:
        return s.get("creation", "")
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(s["creation_time"]))


def render_snapshots(data: dict) -> str:
    """virsh snapshot-list: sorted by name ignoring ASCII case, as virsh sorts them."""
    snaps = sorted(data["snapshots"], key=lambda s: s["name"].encode().lower())
    rows = [[s["name"], _creation(s), s.get("state", "")] for s in snaps]
    return table(["Name", "Creation Time", "State"], rows) + "\n"


def _message(command: str, message: str) -> str:
    """A change's one-line report, laid out as virsh lays out that command's: its line, then
    the blank line virsh ends every command with.  Where virsh prints no line (setmem,
    setvcpus...) only the blank line is left; snapshot-create-as's line is itself the last
    one, and save's follows the empty line virsh's progress report leaves."""
    if not message:
        return "\n"
    if command == "snapshot-create-as":
        return message + "\n"
    if command == "save":
        return "\n" + message + "\n\n"
    return message + "\n\n"


def render(command: str, args: dict, data: object) -> str:
    """Text for a successful reply."""
    if args.get("json"):
        import json  # only when asked: json costs the client start-up a few ms

        return json.dumps(data, indent=2, sort_keys=True) + "\n"
    if data is None:
        return ""
    if command == "list":
        return render_list(data, args)
    if command == "dominfo":
        return render_dominfo(data)
    if command == "domstate":
        text = data["state"]
        if args.get("reason") and data.get("reason"):
            text += f" ({data['reason']})"
        return text + "\n\n"
    if command == "domid":
        return f"{'-' if data.get('id') is None else data['id']}\n\n"
    if command == "domuuid":
        return f"{data['uuid']}\n\n"
    if command == "dumpxml":
        xml = data["xml"]  # virsh prints the XML as libvirt gives it, then its blank line
        return (xml if xml.endswith("\n") else xml + "\n") + "\n"
    if command == "save-list":
        return render_save_list(data)
    if command == "snapshot-list":
        return render_snapshots(data)
    if command == "getlabel" and "object" in data:  # one resource or interface: xm's form
        return f"{data['display'] or data['object'] + ': unlabeled'}\n"
    if command == "getlabel":
        if not data.get("label"):
            return f"{data['domain']}: unlabeled\n"
        return f"policytype=ACM,policy={data['policy']},label={data['label']}\n"
    if command == "labels":
        return "".join(f"{n}\n" for n in data["labels"])
    if command == "resources":
        return "".join(
            f"{r['resource']}\n      type: {r['type']}\n    policy: {r['policy']}\n"
            f"     label: {r['label']}\n"
            for r in data["resources"]
        )
    if command == "dry-run":
        lines = [f"Checking domain {data['domain']} (label {data['label']}):"]
        for it in data["items"]:
            verdict = "PERMITTED" if it["allowed"] else "DENIED"
            lines.append(f"  {it['item']}: {verdict} - {it['reason']}")
        lines.append("Dry Run: " + ("PASSED" if data["allowed"] else "FAILED"))
        return "\n".join(lines) + "\n"
    rendered = _render_host_info(command, data, args)
    if rendered is not None:
        return rendered
    if isinstance(data, dict) and "message" in data:
        return _message(command, data["message"])
    if isinstance(data, dict) and "text" in data:
        return data["text"]
    import json

    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _render_volumes(command: str, data: dict, args: dict) -> str:
    """virsh vol-list (Name, Path; --details adds Type, Capacity, Allocation) and vol-info
    (--bytes: sizes as ``N bytes``)."""
    if command == "vol-info":
        size = (lambda n: f"{n} bytes") if args.get("bytes") else pretty
        pairs = [
            ("Name", data["name"]),
            ("Type", data["type"]),
            ("Capacity", size(data["capacity"])),
            ("Allocation", size(data["allocation"])),
        ]
        return _kv(pairs) + "\n"
    vols = data["volumes"]
    if args.get("details"):
        rows = [
            [v["name"], v["path"], v["type"], pretty(v["capacity"]), pretty(v["allocation"])]
            for v in vols
        ]
        return table(["Name", "Path", "Type", "Capacity", "Allocation"], rows) + "\n"
    return table(["Name", "Path"], [[v["name"], v["path"]] for v in vols]) + "\n"


def _render_host_info(command: str, data: dict, args: dict | None = None) -> str | None:
    """virsh's output for nodeinfo, domblklist, domiflist, the statistics, vncdisplay,
    vcpupin's listing and screenshot (the image goes to standard output as bytes)."""
    if command in ("nodeinfo", "hostinfo"):
        sockets = data.get("sockets") or 0
        nodes = data.get("numa_nodes") or 1
        pairs = [
            ("CPU model", data.get("cpu_model", "")),
            ("CPU(s)", data.get("cpus", 0)),
            ("CPU frequency", f"{data.get('mhz', 0)} MHz"),
            ("CPU socket(s)", sockets // nodes if sockets else 0),
            ("Core(s) per socket", data.get("cores", 0)),
            ("Thread(s) per core", data.get("threads", 0)),
            ("NUMA cell(s)", nodes),
            ("Memory size", f"{data.get('memory_kib', 0)} KiB"),
        ]
        return _kv(pairs, width=21) + "\n"
    if command == "domblklist":
        rows = [[d["target"], d["source"]] for d in data["disks"]]
        return table(["Target", "Source"], rows) + "\n"
    if command == "domiflist":
        rows = [
            [i["interface"], i["type"], i["source"], i["model"], i["mac"]]
            for i in data["interfaces"]
        ]
        return table(["Interface", "Type", "Source", "Model", "MAC"], rows) + "\n"
    if command == "dommemstat":
        return "".join(f"{k} {v}\n" for k, v in data["stats"].items()) + "\n"
    if command in ("domblkstat", "domifstat"):
        dev = data["device"]
        return "".join(f"{dev} {k} {v}\n" for k, v in data["stats"].items()) + "\n"
    if command == "vncdisplay":
        return data["display"] + "\n\n"
    if command in ("vol-list", "vol-info"):
        return _render_volumes(command, data, args)
    if command == "vcpupin" and "vcpus" in data:
        rows = [[str(v["vcpu"]), v["cpus"]] for v in data["vcpus"]]
        return table(["VCPU", "CPU Affinity"], rows) + "\n"
    if command == "screenshot":
        import base64
        import sys

        sys.stdout.buffer.write(base64.b64decode(data["image_b64"]))
        return ""
    return None
