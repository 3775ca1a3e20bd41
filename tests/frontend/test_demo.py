"""`make demo` end to end: the narrated tour checks each step's exit code itself and fails
when anything behaves differently from what it narrates."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


@pytest.mark.skipif(os.geteuid() != 0, reason="the demo runs svirsh as other users: needs root")
def test_demo_tour_runs_as_narrated():
    r = subprocess.run(
        [sys.executable, "-m", "secured_virt.demo"],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    assert "End of the tour" in out
    assert "conflict set 'Competitors'" in out and "ssidref:        0x00030003" in out
    assert "chain intact" in out
