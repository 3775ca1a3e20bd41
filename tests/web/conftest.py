"""Fixtures for the web console (the environment itself is in web_helpers.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from web_helpers import CHROMEDRIVER, CHROMIUM, WebEnv


@pytest.fixture
def web(readable_src):
    env = WebEnv(readable_src)
    yield env
    env.stop()


@pytest.fixture
def artifacts(request, tmp_path) -> Path:
    """Where this test's screenshots go."""
    root = os.environ.get("SVIRT_WEB_ARTIFACTS")
    d = Path(root) / request.node.name if root else tmp_path / "screenshots"
    d.mkdir(parents=True, exist_ok=True)
    print(f"screenshots: {d}")
    return d


@pytest.fixture
def browser():
    """Headless Chromium through Debian's chromedriver (no Selenium Manager, no network)."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("install the Debian packages chromium and chromium-driver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("pip install selenium (the test extras)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=1200,900",
        "--ignore-certificate-errors",
        "--disable-dev-shm-usage",
    ):
        opts.add_argument(arg)  # fmt: skip
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    profile = Path(subprocess.run(["/usr/bin/mktemp", "-d"], capture_output=True, text=True,
                                  check=True).stdout.strip())  # fmt: skip
    opts.add_argument(f"--user-data-dir={profile}")
    env_before = os.environ.get("SE_AVOID_STATS")
    os.environ["SE_AVOID_STATS"] = "true"
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    drv.set_page_load_timeout(30)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)
        if env_before is None:
            os.environ.pop("SE_AVOID_STATS", None)
