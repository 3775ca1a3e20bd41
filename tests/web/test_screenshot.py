"""The README's picture of the web console (docs/web-console.png), taken by the real browser.

The host is the demo's: its node, its role files, its sHype policy (demo.hosting) for boot,
alice's VMs labelled AliceCorp as the demo's ACM chapter labels them.  alice logs in with
her password (PAM in svirtd), starts her database VM and the page is photographed; the
assertions are on what the picture must show (her two VMs only, their labels, the buttons
her role allows, the start's answer).  ``SVIRT_WEB_README_SCREENSHOT=docs/web-console.png``
writes the README's copy; otherwise the picture is only an artifact.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_browser import flash, login, row, state_of, wait
from web_helpers import PY, REPO, WebEnv, write_root_file

pytestmark = pytest.mark.integration
By = pytest.importorskip("selenium.webdriver.common.by").By

LABEL = "dom_AliceCorp"


def demo_host(env: WebEnv) -> None:
    """The demo's sHype policy for boot (as the demo loads it, on the unlabelled node), then
    alice's VMs labelled with it (domain metadata, as setlabel writes it) and the disk of the
    one she starts (the resource label store), before svirtd starts."""
    r = subprocess.run(
        [PY, "-I", str(REPO / "bin" / "svirt-admin"), "--config", str(env.env.config),
         "policy", "load", str(REPO / "etc" / "demo" / "acm-policy.xml"), "--boot"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    # the disks of the VM she starts: AliceCorp data (STE)
    for disk in ("file:/var/lib/libvirt/images/alice-db.qcow2", "phy:/dev/vg0/alice-db-data"):
        r = subprocess.run(
            [PY, "-I", str(REPO / "bin" / "svirsh"), "--config", str(env.env.config),
             "setlabel", "--resource", disk, "res_AliceData"],
            capture_output=True, text=True, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr
    node = env.env.node.read_text()
    for vm in ("alice-web", "alice-db"):
        head = f"<name>{vm}</name>"
        at = node.index("</svirt:owner>", node.index(head)) + len("</svirt:owner>")
        node = (
            node[:at]
            + f'\n        <svirt:label policy="demo.hosting" name="{LABEL}"/>'
            + (node[at:])
        )
    node = node.replace("<svirt:owner>alice</svirt:owner>", "<svirt:owner>svt-alice</svirt:owner>")
    write_root_file(env.env.node, node)


def test_the_web_console_picture(readable_src, browser, artifacts):
    env = WebEnv(readable_src, acm="yes", before_start=demo_host)
    try:
        drv = browser
        drv.set_window_size(1280, 780)
        login(drv, env, "svt-alice")
        wait(drv, lambda d: d.current_url.endswith("/vms"))
        names = [
            r.get_attribute("data-vm") for r in drv.find_elements(By.CSS_SELECTOR, "#vms tbody tr")
        ]
        assert sorted(names) == ["alice-db", "alice-web"]
        for vm in names:
            assert f"ACM:demo.hosting:{LABEL}" in row(drv, vm).text, row(drv, vm).text
            assert "svt-alice" in row(drv, vm).text
        row(drv, "alice-db").find_element(By.CSS_SELECTOR, "button.op-start").click()
        wait(drv, lambda d: flash(d))
        assert "started" in flash(drv), flash(drv)
        wait(drv, lambda d: state_of(d, "alice-db") == "running")
        shot = artifacts / "web-console.png"
        drv.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        target = os.environ.get("SVIRT_WEB_README_SCREENSHOT")
        if target:
            shutil.copy(shot, target)
    finally:
        env.stop()
