"""`make up` is idempotent and heals: a second run starts nothing, a killed service comes back."""

from __future__ import annotations

import os
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
    if not (ROOT / ".local" / "run" / "redemption_ledger.pid").exists():
        raise AssertionError("this test checks the local stack; the services must have been started by `make up`")
    assert "started" not in up(), "a second `up` must not start anything"

    pid = int((ROOT / ".local/run/redemption_ledger.pid").read_text().split()[0])
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.1)
    status = subprocess.run([*STACK, "status"], cwd=ROOT, capture_output=True, text=True)
    assert status.returncode != 0 and "redemption_ledger  down" in status.stdout, status.stdout

    output = up()
    assert "started redemption_ledger" in output
    assert httpx.get(stack.env["REDEMPTION_LEDGER_URL"] + "/readyz", timeout=5).status_code == 200
    assert subprocess.run([*STACK, "status"], cwd=ROOT, capture_output=True).returncode == 0
