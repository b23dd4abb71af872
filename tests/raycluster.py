"""Ray clusters of several nodes on this machine, started with the `ray` CLI as a user would start
them on several machines (`ray start --head`, then `ray start --address=...` per node).

Every process of a cluster is found by its temporary folder (which each node's processes name on
their command lines) and by descent from those, so stopping one cluster never touches another
Ray on the same machine (a `ray stop` would). A node can be killed alone, as a lost machine.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_ports() -> list[str]:
    """Free ports for a node's agents and object manager: their defaults are fixed numbers, which
    the nodes of one machine (and other Rays on it) would fight over."""
    names = ("object-manager-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
             "runtime-env-agent-port", "metrics-export-port")
    return [f"--{name}={free_port()}" for name in names]


def ray_env() -> dict[str, str]:
    """The environment for `ray` commands: this Python's folder first on PATH, as after activating
    the project's virtual environment (so `python` in a submitted job is this one)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("RAY_AUTH_MODE", "disabled")  # `ray job submit` asks for it to be set
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


class LocalCluster:
    def __init__(self) -> None:
        self.temp_dir = f"/tmp/rc{uuid.uuid4().hex[:8]}"  # short: Ray's socket paths must stay under 108 bytes
        self.port = free_port()
        self.dashboard_port: int | None = None
        self.nodes: list[int] = []  # node manager ports of the nodes added after the head

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def dashboard_url(self) -> str:
        assert self.dashboard_port is not None, "the head was started without a dashboard"
        return f"http://127.0.0.1:{self.dashboard_port}"

    def start_head(self, num_cpus: int, num_gpus: int = 0, dashboard: bool = False) -> None:
        args = [RAY, "start", "--head", f"--port={self.port}", f"--num-cpus={num_cpus}", f"--num-gpus={num_gpus}",
                f"--ray-client-server-port={free_port()}", *node_ports(), f"--temp-dir={self.temp_dir}",
                "--disable-usage-stats"]
        if dashboard:
            self.dashboard_port = free_port()
            args += ["--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}"]
        else:
            args.append("--include-dashboard=false")
        self._run(args)

    def add_node(self, num_cpus: int, num_gpus: int = 0) -> int:
        """Start another node joining the head; its node manager port names it."""
        port = free_port()
        self._run([RAY, "start", f"--address={self.address}", f"--num-cpus={num_cpus}", f"--num-gpus={num_gpus}",
                   *node_ports(), f"--temp-dir={self.temp_dir}", f"--node-manager-port={port}", "--disable-usage-stats"])
        self.nodes.append(port)
        return port

    def kill_node(self, node_manager_port: int) -> int:
        """SIGKILL a node's raylet and everything under it, as if its machine were lost; the count killed."""
        roots = [p for p in self._processes() if f"--node_manager_port={node_manager_port}" in " ".join(_cmdline(p))]
        return _kill_all(roots)

    def stop(self) -> None:
        _kill_all(self._processes())

    def _processes(self) -> list[psutil.Process]:
        return [p for p in psutil.process_iter() if any(self.temp_dir in part for part in _cmdline(p))]

    def _run(self, args: list[str]) -> None:
        done = subprocess.run(args, env=ray_env(), capture_output=True, text=True, timeout=180)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


def _kill_all(roots: list[psutil.Process]) -> int:
    """Kill processes and all their descendants (found before any is killed: agents rename themselves)."""
    victims: dict[int, psutil.Process] = {}
    for root in roots:
        try:
            victims[root.pid] = root
            for child in root.children(recursive=True):
                victims[child.pid] = child
        except psutil.NoSuchProcess:
            continue
    for process in victims.values():
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(list(victims.values()), timeout=10)
    time.sleep(0.2)
    return len(victims)
