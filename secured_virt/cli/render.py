"""Turn a Reply's structured data into what virsh would print (or JSON).

Rendering happens in the client process, so output is byte-for-byte the same whether the
request ran in-process (direct mode) or inside svirtd.  Standard library only: this is on the
fast client path.
"""

from __future__ import annotations


def table(headers: list[str], rows: list[list[str]]) -> str:
    """virsh's vshTable layout: one leading space, columns padded and 3 spaces apart."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: list[str]) -> str:
        return " " + "   ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))

    out = [line(headers).rstrip(), "-" * (sum(widths) + 3 * len(widths))]
    out += [line(r) for r in rows]
    return "\n".join(out) + "\n"


def _kv(pairs: list[tuple[str, object]], width: int = 16) -> str:
    return "".join(f"{(k + ':').ljust(width)}{'' if v is None else v}\n" for k, v in pairs)


def _yn(flag: bool) -> str:
    return "yes" if flag else "no"


def render_list(data: dict, args: dict) -> str:
    doms = data.get("domains", [])
    if args.get("name"):
        return "".join(f"{d['name']}\n" for d in doms) + "\n"
    if args.get("uuid"):
        return "".join(f"{d['uuid']}\n" for d in doms) + "\n"
    if args.get("long"):
        return "\n".join(render_dominfo(d) for d in doms)
    headers = ["Id", "Name", "State"]
    if args.get("label"):
        headers.append("ACM-Label")
    rows = []
    for d in doms:
        row = ["-" if d.get("id") is None else str(d["id"]), d["name"], d["state"]]
        if args.get("label"):
            row.append(d.get("acm_label") or "")
        rows.append(row)
    return table(headers, rows) + "\n"


def render_dominfo(d: dict) -> str:
    pairs = [
        ("Id", "-" if d.get("id") is None else d["id"]),
        ("Name", d["name"]),
        ("UUID", d.get("uuid", "")),
        ("OS Type", d.get("os_type", "")),
        ("State", d.get("state", "")),
        ("CPU(s)", d.get("vcpus", "")),
    ]
    if d.get("id") is not None and d.get("cpu_time_ns") is not None:
        pairs.append(("CPU time", f"{d['cpu_time_ns'] / 1e9:.1f}s"))
    pairs += [
        ("Max memory", f"{d.get('max_mem_kib', 0)} KiB"),
        ("Used memory", f"{d.get('mem_kib', 0)} KiB"),
        ("Persistent", _yn(d.get("persistent", False))),
        ("Autostart", "enable" if d.get("autostart") else "disable"),
    ]
    if d.get("owner"):
        pairs.append(("Owner", d["owner"]))
    sec = d.get("security")
    if sec:
        pairs += [
            ("Security model", "ACM (sHype)"),
            ("Security label", sec.get("display") or ""),
            ("Label name", sec.get("label") or ""),
            ("Policy name", sec.get("policy") or ""),
        ]
        if sec.get("ssidref") is not None:
            pairs.append(("ssidref", f"0x{sec['ssidref']:08x} ({sec['ssidref']})"))
    return _kv(pairs) + "\n"


def render_snapshots(data: dict) -> str:
    rows = [[s["name"], s.get("creation", ""), s.get("state", "")] for s in data["snapshots"]]
    return table(["Name", "Creation Time", "State"], rows) + "\n"


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
        xml = data["xml"]
        return xml if xml.endswith("\n") else xml + "\n"
    if command == "snapshot-list":
        return render_snapshots(data)
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
    if isinstance(data, dict) and "message" in data:
        return data["message"] + "\n\n"
    if isinstance(data, dict) and "text" in data:
        return data["text"]
    import json

    return json.dumps(data, indent=2, sort_keys=True) + "\n"
