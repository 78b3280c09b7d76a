"""Three ``helio start`` replicas on one PostgreSQL behind nginx, as docs/deployment.md lays out.

The replicas run examples/deployment/helio.yaml unchanged (their ports and the database come from
the environment it names); nginx runs examples/deployment/nginx.conf with the replicas' addresses
and its own listen ports replaced by loopback ones, wrapped in a main config of our own: no daemon,
one process (``master_process off``, so it needs no privileges and keeps one round-robin state),
pid, logs and temp files in a directory of the caller's. Used by tests/e2e/test_replicas_nginx.py
and benchmarks/bench_replicas.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.conftest import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENT = ROOT / "examples" / "deployment"
CONFIG = DEPLOYMENT / "helio.yaml"
NGINX_SITE = DEPLOYMENT / "nginx.conf"
NAMES = ("a", "b", "c")
API_SECRET = "deploy-e2e-admin-secret-0123456789abcdef"
SDK_TOKEN = "deploy-e2e-sdk-token-0123456789abcdef"
SITE_PORTS = {"mcp": 8080, "operator": 8100, "sideband": 8200}
REPLICA_PORTS = {"mcp": 3000, "operator": 3100, "sideband": 3200}
STARTUP_SECONDS = 120.0
"""Three proxies importing and migrating at once on a loaded 2-core machine take a while."""


@dataclass(frozen=True)
class Replica:
    name: str
    ports: Mapping[str, int]
    """Listener kind (``mcp``, ``operator``, ``sideband``) → port."""
    process: subprocess.Popen[str]
    log: Path


@dataclass
class Cluster:
    """Where agents and operators reach the replicas (nginx only), and what runs behind it."""

    store_url: str
    env: dict[str, str]
    """What a replica's environment adds (the deployment config's variables)."""
    nginx_ports: Mapping[str, int]
    replicas: list[Replica]
    nginx_dir: Path
    nginx: subprocess.Popen[str] | None = None
    stopped: list[str] = field(default_factory=list[str])

    @property
    def mcp_url(self) -> str:
        return f"http://127.0.0.1:{self.nginx_ports['mcp']}/mcp"

    @property
    def sse_url(self) -> str:
        return f"http://127.0.0.1:{self.nginx_ports['mcp']}/sse"

    @property
    def operator_url(self) -> str:
        return f"http://127.0.0.1:{self.nginx_ports['operator']}"

    @property
    def sideband_url(self) -> str:
        return f"http://127.0.0.1:{self.nginx_ports['sideband']}"

    def replica_at(self, upstream_addr: str) -> str:
        """The replica nginx names by its ``$upstream_addr`` (``127.0.0.1:PORT``)."""
        port = int(upstream_addr.rsplit(":", 1)[1])
        for replica in self.replicas:
            if port in replica.ports.values():
                return replica.name
        raise AssertionError(f"{upstream_addr!r} is none of the replicas")

    def access_log(self, site: str) -> list[str]:
        path = self.nginx_dir / f"helio-{site}.log"
        return path.read_text().splitlines() if path.exists() else []

    def replica_logs(self) -> dict[str, str]:
        return {r.name: r.log.read_text() for r in self.replicas}

    def stop_replicas(self) -> dict[str, int]:
        """SIGTERM every replica still running; their exit codes (0: a clean shutdown, audit flushed)."""
        codes: dict[str, int] = {}
        for replica in self.replicas:
            if replica.process.poll() is None:
                replica.process.send_signal(signal.SIGTERM)
        for replica in self.replicas:
            try:
                codes[replica.name] = replica.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                codes[replica.name] = replica.process.wait(timeout=10)
        return codes


def nginx_binary() -> str:
    """Debian's nginx (``nox -s e2e`` installs it when missing; see ``ensure_nginx`` in noxfile.py)."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        raise AssertionError("nginx is not installed: run `uv run nox -s e2e` (it installs Debian's nginx)")
    return found


def render_site(text: str, replicas: list[Replica], nginx_ports: Mapping[str, int], log_dir: Path) -> str:
    """The example site with the replicas' and nginx's ports made loopback ones; logs in ``log_dir``."""
    for replica in replicas:
        for kind, default in REPLICA_PORTS.items():
            text = text.replace(f"helio-{replica.name}:{default}", f"127.0.0.1:{replica.ports[kind]}")
    for kind, default in SITE_PORTS.items():
        text = text.replace(f"listen {default};", f"listen 127.0.0.1:{nginx_ports[kind]};")
    text = text.replace("/var/log/nginx/", f"{log_dir}/")
    assert "helio-a:" not in text, "the example site changed shape"
    assert "listen 8" not in text, "the example site changed shape"
    return text


def main_config(directory: Path, site: Path) -> str:
    """nginx.conf around the site: foreground, one unprivileged process, everything in ``directory``."""
    temp = {name: directory / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(exist_ok=True)
    return f"""daemon off;
master_process off;
pid {directory / "nginx.pid"};
error_log {directory / "error.log"} warn;
events {{
    worker_connections 4096;
}}
http {{
    client_body_temp_path {temp["client_body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    access_log off;
    include {site};
}}
"""


@contextmanager
def nginx_in_front(cluster: Cluster) -> Iterator[subprocess.Popen[str]]:
    directory = cluster.nginx_dir
    directory.mkdir(parents=True, exist_ok=True)
    site = directory / "helio.conf"
    site.write_text(render_site(NGINX_SITE.read_text(), cluster.replicas, cluster.nginx_ports, directory))
    conf = directory / "nginx.conf"
    conf.write_text(main_config(directory, site))
    binary = nginx_binary()
    check = subprocess.run(
        [binary, "-t", "-p", str(directory), "-c", str(conf), "-e", str(directory / "error.log")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    with (directory / "nginx.out").open("w") as sink:
        process = subprocess.Popen(
            [binary, "-p", str(directory), "-c", str(conf), "-e", str(directory / "error.log")],
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        for port in cluster.nginx_ports.values():
            wait_for_port(port, process)
        yield process
    finally:
        process.send_signal(signal.SIGQUIT)  # graceful: finish what is in flight
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def replica_env(store_url: str, upstream_url: str) -> dict[str, str]:
    return {
        "HELIO_DATABASE_URL": store_url,
        "HELIO_UPSTREAM_URL": upstream_url,
        "HELIO_API_SECRET": API_SECRET,
        "HELIO_SDK_TOKEN": SDK_TOKEN,
        "HELIO_BIND": "127.0.0.1",
        "HELIO_PUBLIC_HOST": "127.0.0.1",
    }


def start_replica(
    directory: Path, name: str, env: Mapping[str, str], stack: ExitStack, config: Path = CONFIG
) -> Replica:
    """One ``helio start`` of ``config`` on fresh loopback ports, its output in a file; stopped by
    ``Cluster.stop_replicas`` (or the caller)."""
    ports = {kind: free_port() for kind in REPLICA_PORTS}
    log = directory / f"replica-{name}.log"
    sink = stack.enter_context(log.open("w"))
    process = subprocess.Popen(
        [sys.executable, "-m", "helio_proxy", "start", "-c", str(config), "--no-hot-reload"],
        cwd=directory,
        env={
            **os.environ,
            **env,
            "HELIO_PORT": str(ports["mcp"]),
            "HELIO_DASHBOARD_PORT": str(ports["operator"]),
            "HELIO_SDK_PORT": str(ports["sideband"]),
        },
        stdout=sink,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return Replica(name, ports, process, log)


def wait_for_replicas(replicas: list[Replica]) -> None:
    for replica in replicas:
        for port in replica.ports.values():
            wait_for_port(port, replica.process, timeout=STARTUP_SECONDS)


@contextmanager
def three_replicas(
    directory: Path, store_url: str, upstream_url: str, *, names: tuple[str, ...] = NAMES
) -> Iterator[Cluster]:
    """The replicas (examples/deployment/helio.yaml) and nginx in front, until the block ends."""
    env = replica_env(store_url, upstream_url)
    cluster = Cluster(
        store_url=store_url,
        env=env,
        nginx_ports={kind: free_port() for kind in SITE_PORTS},
        replicas=[],
        nginx_dir=directory / "nginx",
    )
    with ExitStack() as stack:
        stack.callback(cluster.stop_replicas)
        cluster.replicas.extend(start_replica(directory, name, env, stack) for name in names)
        wait_for_replicas(cluster.replicas)
        cluster.nginx = stack.enter_context(nginx_in_front(cluster))
        yield cluster


def wait_until(predicate: object, timeout: float = 10.0) -> None:
    """Poll a zero-argument callable until it is truthy (bounded)."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
