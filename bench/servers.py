"""The servers under test, as child processes on loopback, and what they cost (CPU, peak RSS)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOWRPC_PYTHON = ROOT / ".venv" / "bin" / "python"
PREFECT_VENV = ROOT / "bench" / ".venv-prefect"
PREFECT_PYTHON = PREFECT_VENV / "bin" / "python"
REQUIREMENTS = ROOT / "bench" / "prefect-3.9.1-requirements.txt"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Process:
    """A running server: its process and the address clients use."""

    popen: subprocess.Popen[bytes]
    address: str

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime

    def reset_peak_rss(self) -> None:
        Path(f"/proc/{self.popen.pid}/clear_refs").write_text("5")

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.popen.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024

    def stop(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.popen.kill()


@dataclass
class Replicas:
    """Several servers on one database, measured together; clients balance over `address`."""

    members: list[Process]

    @property
    def address(self) -> str:
        return ",".join(member.address for member in self.members)

    def cpu_seconds(self) -> float:
        return sum(member.cpu_seconds() for member in self.members)

    def reset_peak_rss(self) -> None:
        for member in self.members:
            member.reset_peak_rss()

    def peak_rss_mb(self) -> float:
        return max(member.peak_rss_mb() for member in self.members)

    def stop(self) -> None:
        for member in self.members:
            member.stop()


def _wait(check: callable, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not come up within {seconds} s")


def start_flowrpc(home: Path, database_url: str | None = None) -> Process:
    port = free_port()
    env = {
        **os.environ,
        "FLOWRPC_HOME": str(home),
        # The API alone, as Prefect's server runs with --no-services.
        "FLOWRPC_LATE_RUNS_ENABLED": "false",
        "FLOWRPC_PAUSE_EXPIRATIONS_ENABLED": "false",
    }
    if database_url:
        env["FLOWRPC_DATABASE_URL"] = database_url
    command = [str(FLOWRPC_PYTHON), "-m", "flowrpc.cli", "server", "start", "--port", str(port)]
    popen = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait(
        lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True, "flowrpc"
    )
    return Process(popen, f"127.0.0.1:{port}")


def ensure_prefect() -> None:
    """Prefect 3.9.1's server in its own virtual environment (see bench/README.md for why the
    requirement list is installed first)."""
    if PREFECT_PYTHON.exists():
        return
    subprocess.run([sys.executable, "-m", "venv", str(PREFECT_VENV)], check=True)
    pip = [str(PREFECT_PYTHON), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
    subprocess.run([*pip, "--no-deps", "prefect==3.9.1"], check=True)


def prefect_env(home: Path, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }


def start_prefect(
    home: Path, services: bool = False, extra_env: dict[str, str] | None = None
) -> Process:
    """Prefect's API server; with services=False `--no-services`, else its services as
    `extra_env` leaves them (PREFECT_SERVER_SERVICES_*_ENABLED)."""
    port = free_port()
    command = [
        str(PREFECT_VENV / "bin" / "prefect"),
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    if not services:
        command.append("--no-services")
    env = {**prefect_env(home, port), **(extra_env or {})}
    popen = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api/health"
    _wait(lambda: urllib.request.urlopen(url, timeout=2).status == 200, "Prefect's server")
    return Process(popen, f"http://127.0.0.1:{port}/api")
