"""On a real QEMU guest: alice starts it with the page's button (svirtd's gate, libvirtd,
QEMU), then reads its serial console in the browser: xterm.js over the WebSocket, relayed by
svirtd's console relay (session_console), the guest's firmware output on screen."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import pytest

from secured_virt.testing.libvirtd import qemu_processes

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_browser import By, flash, login, row, state_of, wait
from web_helpers import WebEnv

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def qemu_web(readable_src):
    from secured_virt.testing.libvirtd import ensure_libvirtd, tiny_guest_xml

    status = ensure_libvirtd()
    if not status.ok:
        pytest.skip(status.reason)
    import libvirt

    name = f"svt-web-con-{os.getpid()}"
    xml = tiny_guest_xml(name).replace(
        "<boot dev='hd'/>", "<boot dev='hd'/>\n    <bios useserial='yes' rebootTimeout='1000'/>"
    )
    conn = libvirt.open(status.uri)
    dom = conn.defineXML(xml)  # defined, shut off: alice starts it from the page

    def pa(text):  # alice's team gets the guest, and the console operation (19)
        text = text.replace('<VM name="alice-db"/>', f'<VM name="alice-db"/><VM name="{name}"/>', 1)
        return text.replace('<operation id="2"/>', '<operation id="2"/><operation id="19"/>', 1)

    env = WebEnv(readable_src, uri=status.uri, pa_extra=pa)
    env.vm = name
    yield env
    env.stop()
    with contextlib.suppress(libvirt.libvirtError):
        dom.destroy()
    with contextlib.suppress(libvirt.libvirtError):
        dom.undefine()
    conn.close()


def screen(drv) -> str:
    return drv.execute_script(
        "const b = window.svirtTerminal && window.svirtTerminal.buffer.active; if (!b) return '';"
        "let s = ''; for (let i = 0; i < b.length; i++) { const l = b.getLine(i);"
        " if (l) s += l.translateToString(true) + '\\n'; } return s;"
    )


def test_alice_reads_the_guests_serial_console_in_the_browser(qemu_web, browser, artifacts):
    drv, web = browser, qemu_web
    login(drv, web, "svt-alice")
    wait(drv, lambda d: d.current_url.endswith("/vms"))
    assert state_of(drv, web.vm) == "shut off"
    row(drv, web.vm).find_element(By.CSS_SELECTOR, "button.op-start").click()
    wait(drv, lambda d: "started" in flash(d), timeout=60)
    wait(drv, lambda d: state_of(d, web.vm) == "running", timeout=60)
    assert qemu_processes(web.vm), "the page said started but no QEMU runs the guest"
    link = drv.find_element(By.CSS_SELECTOR, f"tr[data-vm='{web.vm}'] a.console")
    link.click()
    wait(drv, lambda d: d.find_element(By.ID, "console-status").get_attribute("data-status"))
    status = drv.find_element(By.ID, "console-status")
    assert status.get_attribute("data-status") == "0", status.text
    assert f"Connected to domain '{web.vm}'" in status.text
    wait(drv, lambda d: "SeaBIOS" in screen(d), timeout=60)
    drv.save_screenshot(str(artifacts / "console.png"))
    starts = [r for r in web.audit() if r.get("type") == "decision" and r.get("op") == "start"]
    assert [(r["user"], r["verdict"], r["via"]) for r in starts] == [
        ("svt-alice", "allowed", "web")
    ]
    recs = [r for r in web.audit() if r.get("type") == "decision" and r.get("op") == "console"]
    assert [(r["user"], r["verdict"], r["via"]) for r in recs] == [("svt-alice", "allowed", "web")]
    # bob may not: the page shows the gate's reason, nothing is relayed
    drv.find_element(By.ID, "logout").click()
    login(drv, web, "svt-bob")
    wait(drv, lambda d: d.current_url.endswith("/vms"))
    drv.get(f"{web.url}/console/{web.vm}")
    wait(drv, lambda d: d.find_element(By.ID, "console-status").get_attribute("data-closed"))
    text = drv.find_element(By.ID, "console-status").text
    assert "refused by the rbac check" in text and "[rbac]" in text
    assert "SeaBIOS" not in screen(drv)
