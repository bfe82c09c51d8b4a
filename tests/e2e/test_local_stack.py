"""`make up` is idempotent and heals: a second run starts nothing, a killed service comes back.

The process killed is marketing_view's projector (the second process of marketing_view, beside its read API):
it exercises the same pid-file mechanism as any service, and disturbs no ledger that others may be using."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx

from tests.conftest import ROOT, Stack

STACK = [sys.executable, str(ROOT / "deploy/local/stack.py")]


def up() -> str:
    result = subprocess.run([*STACK, "up"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_up_twice_starts_nothing_and_a_killed_service_comes_back(stack: Stack) -> None:
    if not (ROOT / ".local" / "run" / "marketing_view_projector.pid").exists():
        raise AssertionError("this test checks the local stack; the services must have been started by `make up`")
    assert "started" not in up(), "a second `up` must not start anything"
    status = subprocess.run([*STACK, "status"], cwd=ROOT, capture_output=True, text=True)
    for name in ("marketing_view", "marketing_view_projector"):
        assert re.search(rf"^  {name}\s+up\s", status.stdout, re.M), status.stdout

    pid = int((ROOT / ".local/run/marketing_view_projector.pid").read_text().split()[0])
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.1)
    status = subprocess.run([*STACK, "status"], cwd=ROOT, capture_output=True, text=True)
    assert status.returncode != 0 and re.search(r"^  marketing_view_projector\s+down", status.stdout, re.M), \
        status.stdout
    assert re.search(r"^  marketing_view\s+up\s", status.stdout, re.M), "the read API does not need the projector"

    output = up()
    assert "started marketing_view_projector" in output
    assert httpx.get(stack.env["MARKETING_VIEW_PROJECTOR_URL"] + "/readyz", timeout=5).status_code == 200
    assert subprocess.run([*STACK, "status"], cwd=ROOT, capture_output=True).returncode == 0
