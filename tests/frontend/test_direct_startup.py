"""What direct mode's start-up imports (issue 18): no urllib/http/email/ssl for XML escaping.

xml.sax.saxutils imports urllib.request, which pulls http.client, email and ssl: ~12 ms of
every root svirsh, spent on two string replacements in confinement.vmmeta.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NETWORK_STACK = ("xml.sax.saxutils", "urllib.request", "http.client", "email.parser", "ssl")


@pytest.mark.parametrize("module", ["secured_virt.confinement.vmmeta"])
def test_module_does_not_load_the_network_stack(module):
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r}); import {module}; "
        f"print([m for m in {NETWORK_STACK!r} if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"
