"""infra/localstripe_server.py: loopback only, and never left behind when whoever started it dies."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import requests

from tests.conftest import free_port
from tests.offsets.conftest import ROOT


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is as good as gone
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def test_launcher_serves_on_loopback_and_exits_with_its_parent(tmp_path):
    port = free_port()
    pid_file = tmp_path / "pid"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import subprocess, sys, time
                p = subprocess.Popen([sys.executable, {str(ROOT / "infra" / "localstripe_server.py")!r},
                                      "--port", "{port}"])
                open({str(pid_file)!r}, "w").write(str(p.pid))
                time.sleep(600)
                """
            ),
        ],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = requests.delete(f"http://127.0.0.1:{port}/_config/data", timeout=1)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "localstripe did not start"
                time.sleep(0.2)
        assert response.status_code == 200
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
        if listening:  # ss is there: only the loopback address
            assert all("127.0.0.1:" in line for line in listening.splitlines()), listening
        child = int(pid_file.read_text())
        os.kill(parent.pid, signal.SIGKILL)  # the parent dies without cleaning up
        parent.wait(10)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(child), "localstripe outlived its parent"
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)
