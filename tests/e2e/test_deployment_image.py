"""The container image's commands, run outside a container (no runtime here): the Dockerfile's
``ENTRYPOINT`` + ``CMD`` with its ``ENV`` start a proxy on PostgreSQL from the config the image
copies in, its ``HEALTHCHECK`` command passes against that proxy and fails once it has stopped,
and ``SIGTERM`` (what ``docker stop`` and Kubernetes send) ends it cleanly.

The commands come from the project's virtual environment, where the wheel's console script and
the image's ``python`` are the same programs the image installs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helio_proxy.store.testing import postgres_schema
from tests.e2e.conftest import free_port, wait_for_port
from tests.e2e.replicas import replica_env
from tests.unit.deployment.test_deployment_assets import DOCKERFILE, instructions

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

IMAGE_CONFIG = "/etc/helio/helio.yaml"


def _final_stage() -> list[tuple[str, str]]:
    steps = instructions(DOCKERFILE.read_text())
    last = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last:]


def _image_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, args in stage:
        if keyword == "ENV":
            for pair in args.split():
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def _host_path(argument: str, stage: list[tuple[str, str]]) -> str:
    """An image path the Dockerfile ``COPY``s from the checkout, as that checkout's path."""
    for keyword, args in stage:
        if keyword == "COPY" and not args.startswith("--from"):
            source, destination = args.split()
            if destination == argument:
                return str(DOCKERFILE.parents[2] / source)
    return argument


def test_the_images_entrypoint_serves_and_its_healthcheck_passes_then_fails_after_sigterm(
    tmp_path: Path, demo_port: int
) -> None:
    stage = _final_stage()
    [entrypoint] = [json.loads(args) for keyword, args in stage if keyword == "ENTRYPOINT"]
    [cmd] = [json.loads(args) for keyword, args in stage if keyword == "CMD"]
    [check] = [args for keyword, args in stage if keyword == "HEALTHCHECK"]
    healthcheck = json.loads(check[check.index("CMD [") + 4 :])
    assert entrypoint == ["helio"]
    assert IMAGE_CONFIG in cmd
    assert healthcheck[0] == "python"

    binaries = Path(sys.executable).parent
    command = [str(binaries / entrypoint[0]), *(_host_path(a, stage) for a in cmd)]
    ports = {"HELIO_PORT": free_port(), "HELIO_DASHBOARD_PORT": free_port(), "HELIO_SDK_PORT": free_port()}
    upstream = demo_port
    with postgres_schema() as url:
        env = {
            **os.environ,
            **_image_env(stage),
            **replica_env(url, f"http://127.0.0.1:{upstream}/mcp"),  # what `docker run -e` would pass
            **{name: str(port) for name, port in ports.items()},
        }
        process = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            wait_for_port(ports["HELIO_PORT"], process, timeout=120)
            probe = [sys.executable, *healthcheck[1:]]
            # As Docker does in the start period: failures while the proxy starts do not count.
            deadline = time.monotonic() + 60
            while True:
                healthy = subprocess.run(
                    probe, env=env, capture_output=True, text=True, timeout=30, check=False
                )
                if healthy.returncode == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        unhealthy = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert healthy.returncode == 0, healthy.stderr
    assert process.returncode == 0, output
    assert unhealthy.returncode != 0
    assert "Connection refused" in unhealthy.stderr
    assert f"Config: {DOCKERFILE.parents[2] / 'examples/deployment/helio.yaml'}" in output
    assert "Session state: in the store (postgresql://127.0.0.1:5432)" in output
    assert f"Helio proxy listening on http://127.0.0.1:{ports['HELIO_PORT']}" in output
