"""The web console in a real browser: a real user, a real password (PAM in svirtd), the real
gate, the audit log; assertions on page structure and behaviour, screenshots as artifacts."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from web_helpers import PASSWORDS

pytestmark = pytest.mark.integration
By = pytest.importorskip("selenium.webdriver.common.by").By
WebDriverWait = pytest.importorskip("selenium.webdriver.support.ui").WebDriverWait


def wait(drv, cond, timeout=20):
    return WebDriverWait(drv, timeout, poll_frequency=0.1).until(lambda d: cond(d))


def login(drv, web, user, password=None):
    drv.get(web.url + "/login")
    drv.find_element(By.ID, "user").send_keys(user)
    drv.find_element(By.ID, "password").send_keys(password or PASSWORDS[user])
    old = drv.find_element(By.TAG_NAME, "html")
    drv.find_element(By.ID, "login").click()
    wait(drv, lambda d: stale(old))


def stale(el) -> bool:
    try:
        el.is_enabled()
    except Exception:
        return True
    return False


def row(drv, vm):
    return drv.find_element(By.CSS_SELECTOR, f"tr[data-vm='{vm}']")


def state_of(drv, vm) -> str:
    return row(drv, vm).find_element(By.CSS_SELECTOR, ".state").text


def flash(drv) -> str:
    el = drv.find_element(By.ID, "flash")
    return el.text if el.is_displayed() else ""


async def get_with_cookie(web, path, cookie):
    jar = aiohttp.CookieJar(unsafe=True)
    async with (
        aiohttp.ClientSession(cookie_jar=jar) as s,
        s.get(
            web.url + path,
            ssl=web.ssl_context(),
            headers={"Cookie": f"__Host-svirt-session={cookie}"},
            allow_redirects=False,
        ) as r,
    ):
        return r.status, r.headers.get("Location"), await r.text()


def test_alice_logs_in_sees_hers_starts_is_refused_logs_out(web, browser, artifacts):
    drv = browser
    drv.get(web.url + "/vms")
    assert drv.current_url.endswith("/login"), "not logged in: the VM page sends to the login"
    login(drv, web, "svt-alice", "wrong-password")
    assert "authentication failed" in flash(drv)
    drv.save_screenshot(str(artifacts / "01-login-refused.png"))
    login(drv, web, "svt-alice")
    wait(drv, lambda d: d.current_url.endswith("/vms"))
    drv.save_screenshot(str(artifacts / "02-vms.png"))

    # only her VMs, with state, owner and the columns the page promises
    names = [
        r.get_attribute("data-vm") for r in drv.find_elements(By.CSS_SELECTOR, "#vms tbody tr")
    ]
    assert sorted(names) == ["alice-db", "alice-web"]
    heads = [th.text for th in drv.find_elements(By.CSS_SELECTOR, "#vms thead th")]
    assert heads == ["VM", "State", "Realm", "Owner", "Label", "Actions"]
    assert state_of(drv, "alice-db") == "shut off"
    # buttons only for what her role allows (WebTeam: start, shutdown, destroy, suspend, resume)
    ops = {
        b.get_attribute("value")
        for b in row(drv, "alice-db").find_elements(By.CSS_SELECTOR, "button.op")
    }
    assert ops == {"start", "shutdown", "destroy", "suspend", "resume"}
    # destroy needs her password again (auth_operations): the row has a password field
    assert row(drv, "alice-web").find_elements(By.CSS_SELECTOR, "input[type=password]")
    # no admin pages in her menu
    assert not drv.find_elements(By.CSS_SELECTOR, "nav a[href='/audit']")
    # no inline script anywhere, and the CSP forbids it
    assert all(s.get_attribute("src") for s in drv.find_elements(By.TAG_NAME, "script"))

    # start alice-db: the gate allows, the state changes live without a reload
    marker = drv.execute_script("window.__noReload = 1; return 1")
    row(drv, "alice-db").find_element(By.CSS_SELECTOR, "button.op-start").click()
    wait(drv, lambda d: "started" in flash(d))
    wait(drv, lambda d: state_of(d, "alice-db") == "running")
    assert drv.execute_script("return window.__noReload") == marker, "the page was reloaded"
    drv.save_screenshot(str(artifacts / "03-started.png"))

    # refused on a VM that is not hers: a crafted submit (her own valid CSRF token) to bob-build
    drv.execute_script(
        "document.querySelector(\"tr[data-vm='alice-web'] form.act\").action = '/vm/bob-build'"
    )
    row(drv, "alice-web").find_element(By.CSS_SELECTOR, "button.op-suspend").click()
    wait(drv, lambda d: "denied" in flash(d))
    text = flash(drv)
    assert "refused by the rbac check" in text and "bob-build" in text and "[rbac]" in text
    drv.save_screenshot(str(artifacts / "04-refused.png"))
    drv.refresh()

    # destroy with a wrong password: PAM (in svirtd) refuses, the VM keeps running
    r = row(drv, "alice-db")
    r.find_element(By.CSS_SELECTOR, "input[type=password]").send_keys("not-her-password")
    r.find_element(By.CSS_SELECTOR, "button.op-destroy").click()
    wait(drv, lambda d: "[pam]" in flash(d))
    assert state_of(drv, "alice-db") == "running"
    r = row(drv, "alice-db")
    r.find_element(By.CSS_SELECTOR, "input[type=password]").send_keys(PASSWORDS["svt-alice"])
    r.find_element(By.CSS_SELECTOR, "button.op-destroy").click()
    wait(drv, lambda d: "destroyed" in flash(d))
    wait(drv, lambda d: state_of(d, "alice-db") == "shut off")

    # narrow screen: the table becomes cards, nothing needs horizontal scrolling
    drv.set_window_size(380, 800)
    drv.refresh()
    width = drv.execute_script("return document.documentElement.scrollWidth")
    assert width <= 400, f"the page is {width}px wide on a 380px screen"
    drv.save_screenshot(str(artifacts / "05-narrow.png"))
    drv.set_window_size(1200, 900)

    # log out: the old cookie no longer works, at once
    old = drv.get_cookie("__Host-svirt-session")["value"]
    drv.find_element(By.ID, "logout").click()
    wait(drv, lambda d: "/login" in d.current_url)
    assert "logged out" in flash(drv)
    status, location, _ = asyncio.run(get_with_cookie(web, "/vms", old))
    assert status == 303 and location.startswith("/login")
    drv.save_screenshot(str(artifacts / "06-logged-out.png"))

    # the audit log: every step, via=web with her browser's address, one unbroken chain
    recs = [r for r in web.audit() if r.get("type") == "decision" and r.get("via") == "web"]
    by_op = {(r["op"], r["verdict"], r.get("vm")) for r in recs if r["user"] == "svt-alice"}
    assert ("start", "allowed", "alice-db") in by_op
    assert ("suspend", "denied", "bob-build") in by_op
    assert ("destroy", "denied", "alice-db") in by_op and (
        "destroy",
        "allowed",
        "alice-db",
    ) in by_op
    assert ("session-logout", "allowed", None) in by_op
    assert all(r.get("peer", "").startswith("127.0.0.1:") for r in recs if r["user"] == "svt-alice")
    from secured_virt.access import audit

    assert audit.verify(web.env.audit_log).ok


def test_an_auditor_reads_the_trail_and_explains(web, browser, artifacts):
    drv = browser
    login(drv, web, "svt-alice")
    wait(drv, lambda d: d.current_url.endswith("/vms"))
    drv.find_element(By.ID, "logout").click()
    login(drv, web, "svt-carol")
    wait(drv, lambda d: d.current_url.endswith("/vms"))
    # carol sees every VM but may change none: no buttons at all
    assert len(drv.find_elements(By.CSS_SELECTOR, "#vms tbody tr")) == 5
    assert not drv.find_elements(By.CSS_SELECTOR, "button.op")
    links = {
        a.get_attribute("href").rsplit("/", 1)[1]
        for a in drv.find_elements(By.CSS_SELECTOR, "nav a")
    }
    assert {"audit", "explain", "policy"} <= links
    drv.get(web.url + "/audit?user=svt-alice&decision=allowed")
    rows = drv.find_elements(By.CSS_SELECTOR, "#audit tbody tr")
    assert rows and all("svt-alice" in r.text for r in rows)
    assert any("session-login" in r.text for r in rows)
    drv.save_screenshot(str(artifacts / "07-audit.png"))
    drv.get(web.url + "/explain?user=svt-alice&operation=start&vm=bob-build")
    text = drv.find_element(By.ID, "explanation").text
    assert text.startswith("DENIED: svt-alice start on bob-build")
    assert "no role of user 'svt-alice' grants" in text and "WebTeam" in text
    drv.save_screenshot(str(artifacts / "08-explain.png"))
    # alice may not read the trail: the page shows the gate's reason
    drv.find_element(By.ID, "logout").click()
    login(drv, web, "svt-alice")
    wait(drv, lambda d: d.current_url.endswith("/vms"))
    drv.get(web.url + "/audit")
    assert "refused by the rbac check" in flash(drv) and "audit-read" in flash(drv)
