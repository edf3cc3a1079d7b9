"""Stopping a server that a benchmark started in a session of its own (`start_new_session=True`)."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_server(proc: subprocess.Popen, grace_s: float = 120.0) -> None:
    """SIGTERM to the server process alone, then SIGKILL to its whole process group for whatever is left.

    The server shuts Serve down on SIGTERM (`stackserve run`), and Serve stops the HAProxy it started. HAProxy runs
    in a process group of its own, so SIGTERM to the whole group at once killed Serve's HAProxy manager first and
    left HAProxy running, holding its port (seven of them after one day of benchmarks)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # the group is gone already
        pass
    if proc.poll() is None:
        proc.wait(10)
