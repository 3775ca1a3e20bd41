"""The catalogue operations that had an id but no command (46, 49-61, 63), under virsh's names.

Until these existed, a grant of e.g. ``hostinfo`` (46) or ``vcpupin`` (63) did nothing: no
command asked for it.  Each command here does what its virsh namesake does, through the same
path as every other command (resolve, the mediation table's row, the gate, the backend pinned
to the checked UUID, the audit record).  Arguments are checked *before* any decision, so a bad
one is a usage error (exit 2), never an allowed decision left without an outcome.

Where the backend cannot do something (xl has no block statistics, no managed save, no
screenshots...), the backend says so with ``unsupported``: the caller learns it from the
hypervisor's side, after the same decision.

What each reads or writes:

* ``nodeinfo``/``hostinfo`` (46) - the host object, like virsh nodeinfo;
* ``vncdisplay`` (49), ``domblklist`` (52), ``domiflist`` (53) - from the domain's XML (the
  live one of a running domain), so both backends answer alike;
* ``screenshot`` (50) - the image travels back in the reply; svirsh writes it to its own
  standard output, which the caller's shell opened (never a path opened by root);
* ``send-key`` (51), ``inject-nmi`` (60) - input to the guest;
* ``dommemstat``/``domblkstat``/``domifstat`` (54-56) - the hypervisor's counters;
* ``managedsave``/``managedsave-remove`` (57, 58) - libvirt's own managed-save directory;
* ``dump`` (59) - the guest's memory into a file: like ``save``, a non-root caller names a
  plain file inside their own save directory, opened safely (the ``save_path`` step);
* ``desc`` (61) - the domain's title or description;
* ``vcpupin`` (63) - show or set which host CPUs a vCPU may run on.
"""

from __future__ import annotations

import base64

from secured_virt.requests import EXIT_USAGE

from . import mediation
from .errors import UserError
from .support import _say

_MAX_KEYS = 16  # virsh's VIR_DOMAIN_SEND_KEY_MAX_KEYS


def _int_arg(value, what: str, *, low: int = 0, high: int = 1 << 20) -> int:
    text = "" if value is None else str(value).strip()
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise UserError(
            f"{what}: expected a number from {low} to {high}, got {value!r}", EXIT_USAGE
        )
    return int(text)


def parse_cpulist(text) -> tuple[int, ...]:
    """virsh's cpulist: ``0``, ``0-3``, ``0,2-3``; ``^N`` exclusions are refused (usage)."""
    if not isinstance(text, str) or not text.strip():
        raise UserError("vcpupin: give a host CPU list such as 0-3 or 0,2", EXIT_USAGE)
    cpus: set[int] = set()
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        if not (lo.isascii() and lo.isdigit()) or (sep and not (hi.isascii() and hi.isdigit())):
            raise UserError(f"vcpupin: {text!r} is not a CPU list (e.g. 0-3 or 0,2)", EXIT_USAGE)
        first, last = int(lo), int(hi) if sep else int(lo)
        if last < first or last > 4095:
            raise UserError(f"vcpupin: bad CPU range {part!r}", EXIT_USAGE)
        cpus.update(range(first, last + 1))
    return tuple(sorted(cpus))


def _format_cpus(cpus: tuple[int, ...]) -> str:
    """0,1,2,5 -> '0-2,5' (virsh's vcpupin listing)."""
    out, run = [], []
    for c in cpus:
        if run and c == run[-1] + 1:
            run.append(c)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [c]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def _keycodes(text) -> list[int]:
    if not isinstance(text, str) or not text.strip():
        raise UserError("send-key: give key codes, e.g. 37,18 (separated by ',')", EXIT_USAGE)
    parts = [p for p in text.replace(" ", ",").split(",") if p]
    if len(parts) > _MAX_KEYS:
        raise UserError(f"send-key: at most {_MAX_KEYS} keys at once", EXIT_USAGE)
    codes = []
    for p in parts:
        try:
            code = int(p, 0)
        except ValueError:
            raise UserError(f"send-key: {p!r} is not a key code (a number)", EXIT_USAGE) from None
        if not 0 <= code <= 0xFFFF:
            raise UserError(f"send-key: key code {p!r} is out of range", EXIT_USAGE)
        codes.append(code)
    return codes


def _devices(xml: str) -> tuple[list[dict], list[dict], str | None]:
    """(disks, interfaces, VNC display) of a domain's XML, the way virsh lists them."""
    from lxml import etree

    root = etree.fromstring(xml.encode())
    disks, ifaces = [], []
    for d in root.iterfind("devices/disk"):
        src = d.find("source")
        source = "-"
        if src is not None:
            source = next(
                (src.get(a) for a in ("file", "dev", "dir", "name", "volume") if src.get(a)), "-"
            )
        tgt = d.find("target")
        disks.append(
            {
                "type": d.get("type", ""),
                "device": d.get("device", "disk"),
                "target": tgt.get("dev", "") if tgt is not None else "",
                "source": source,
            }
        )
    for i in root.iterfind("devices/interface"):
        src, mac, model, tgt = (i.find(x) for x in ("source", "mac", "model", "target"))
        source = "-"
        if src is not None:
            source = next((src.get(a) for a in ("network", "bridge", "dev") if src.get(a)), "-")
        ifaces.append(
            {
                "interface": tgt.get("dev", "-") if tgt is not None else "-",
                "type": i.get("type", ""),
                "source": source,
                "model": model.get("type", "-") if model is not None else "-",
                "mac": mac.get("address", "") if mac is not None else "",
            }
        )
    vnc = None
    g = root.find("devices/graphics[@type='vnc']")
    if g is not None and (g.get("port") or "").lstrip("-").isdigit() and int(g.get("port")) > 0:
        listen = g.get("listen") or "127.0.0.1"
        vnc = f"{listen}:{int(g.get('port')) - 5900}"
    return disks, ifaces, vnc


class HostInfoCommands:
    """Mixed into ``Service`` (see ``facade``), which provides _run, _host_op and backend."""

    # -- the host ---------------------------------------------------------------------------
    def _cmd_nodeinfo(self, ident, args, interaction):
        return self._host_op(ident, "hostinfo", interaction, lambda: self.backend.hostinfo())

    _cmd_hostinfo = _cmd_nodeinfo

    # -- read from the domain's XML ----------------------------------------------------------
    def _xml_read(self, ident, op_name, args, interaction, pick):
        name = args.get("domain")

        def act(info):
            xml = self.backend.dumpxml(name, inactive=info.id is None)
            disks, ifaces, vnc = _devices(xml)
            return {"domain": name, **pick(disks, ifaces, vnc, info)}

        return self._run(ident, op_name, name, interaction, act)

    def _cmd_domblklist(self, ident, args, interaction):
        return self._xml_read(
            ident, "domblklist", args, interaction, lambda d, _i, _v, _n: {"disks": d}
        )

    def _cmd_domiflist(self, ident, args, interaction):
        return self._xml_read(
            ident, "domiflist", args, interaction, lambda _d, i, _v, _n: {"interfaces": i}
        )

    def _cmd_vncdisplay(self, ident, args, interaction):
        name = args.get("domain")

        def pick(_d, _i, vnc, info):
            if info.id is None:
                raise UserError(f"domain '{name}' is not running", 1)
            if vnc is None:
                raise UserError(f"domain '{name}' has no VNC display", 1)
            return {"display": vnc}

        return self._xml_read(ident, "vncdisplay", args, interaction, pick)

    # -- statistics --------------------------------------------------------------------------
    def _cmd_dommemstat(self, ident, args, interaction):
        name = args.get("domain")
        return self._run(
            ident,
            "dommemstat",
            name,
            interaction,
            lambda _i: {"domain": name, "stats": self.backend.dommemstat(name)},
        )

    def _device_stat(self, ident, op_name, args, interaction, method):
        name, dev = args.get("domain"), args.get("device")
        if not isinstance(dev, str) or not dev or dev.startswith("-") or "/" in dev:
            raise UserError(f"{op_name}: give the device's target name (e.g. vda)", EXIT_USAGE)
        return self._run(
            ident,
            op_name,
            name,
            interaction,
            lambda _i: {"domain": name, "device": dev, "stats": method(name, dev)},
        )

    def _cmd_domblkstat(self, ident, args, interaction):
        return self._device_stat(ident, "domblkstat", args, interaction, self.backend.domblkstat)

    def _cmd_domifstat(self, ident, args, interaction):
        return self._device_stat(ident, "domifstat", args, interaction, self.backend.domifstat)

    # -- maintenance -------------------------------------------------------------------------
    def _cmd_managedsave(self, ident, args, interaction):
        name = args.get("domain")
        return self._run(
            ident,
            "managedsave",
            name,
            interaction,
            _say(
                f"Domain '{name}' state saved by libvirt", lambda: self.backend.managed_save(name)
            ),
        )

    def _cmd_managedsave_remove(self, ident, args, interaction):
        name = args.get("domain")

        def act(_info):
            if self.backend.managed_save_remove(name):
                return {"message": f"Removed managedsave image for domain '{name}'"}
            return {"message": f"Domain '{name}' has no manage save image; removal skipped"}

        return self._run(ident, "managedsave-remove", name, interaction, act)

    def _cmd_dump(self, ident, args, interaction):
        name = args.get("domain")
        path = self.save_path(ident, args.get("file") or "")

        def act(_info):
            # the same safe target as save: checked (and created) only once authorized
            self._check_save_target(ident, path, create=True)
            self.backend.dump(name, path, memory_only=bool(args.get("memory_only")))
            return {"message": f"Domain '{name}' dumped to {path}"}

        return self._run(ident, "dump", name, interaction, act, performs=(mediation.SAVE_PATH,))

    def _cmd_inject_nmi(self, ident, args, interaction):
        name = args.get("domain")
        return self._run(
            ident, "inject-nmi", name, interaction, _say("", lambda: self.backend.inject_nmi(name))
        )

    def _cmd_send_key(self, ident, args, interaction):
        name = args.get("domain")
        keys = _keycodes(args.get("keys"))
        hold = _int_arg(args.get("holdtime") or "0", "--holdtime", high=60000)
        codeset = args.get("codeset") or "linux"

        def act(_info):
            self.backend.send_key(name, keys, codeset=codeset, holdtime=hold)
            return {"message": ""}

        return self._run(ident, "send-key", name, interaction, act)

    def _cmd_screenshot(self, ident, args, interaction):
        name = args.get("domain")
        screen = _int_arg(args.get("screen") or "0", "--screen", high=64)

        def act(_info):
            mime, data = self.backend.screenshot(name, screen)
            return {"domain": name, "mime": mime, "image_b64": base64.b64encode(data).decode()}

        return self._run(ident, "screenshot", name, interaction, act)

    def _cmd_desc(self, ident, args, interaction):
        name = args.get("domain")
        title = bool(args.get("title"))
        new = args.get("new_desc")
        live, config = bool(args.get("live")), bool(args.get("config"))
        if not (live or config):
            live = config = True
        if new is not None and len(new) > 65536:
            raise UserError("desc: the description is longer than 64 KiB", EXIT_USAGE)

        def act(info):
            if new is None:
                text = self.backend.get_description(
                    name, title=title, inactive=config and not args.get("live")
                )
                return {"domain": name, "text": text + "\n" if text else "No description\n"}
            self.backend.set_description(name, new, title=title, live=live, config=config)
            what = "title" if title else "description"
            return {"message": f"Domain {what} updated successfully"}

        return self._run(ident, "desc", name, interaction, act)

    def _cmd_vcpupin(self, ident, args, interaction):
        name = args.get("domain")
        vcpu_arg, cpulist = args.get("vcpu"), args.get("cpulist")
        if vcpu_arg is None and cpulist is not None:
            raise UserError("vcpupin: give the vCPU number before the CPU list", EXIT_USAGE)
        vcpu = None if vcpu_arg is None else _int_arg(vcpu_arg, "vcpupin: vCPU", high=4095)
        cpus = None if cpulist is None else parse_cpulist(cpulist)
        live, config = bool(args.get("live")), bool(args.get("config"))

        def act(info):
            if cpus is None:
                pins = self.backend.vcpu_pin_info(name)
                if vcpu is not None:
                    pins = [p for p in pins if p[0] == vcpu]
                return {
                    "domain": name,
                    "vcpus": [{"vcpu": v, "cpus": _format_cpus(c) or "all"} for v, c in pins],
                }
            on_live = live or not config
            self.backend.vcpupin(name, vcpu, cpus, live=on_live and info.id is not None,
                                 config=config or info.id is None)  # fmt: skip
            return {"message": ""}

        return self._run(ident, "vcpupin", name, interaction, act)
