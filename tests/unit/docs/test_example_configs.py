"""Every YAML file under examples/ loads with the real schema, and the refund example's configs
name only tools its server really has."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner

from helio_proxy.cli import cli
from helio_proxy.config import parse_config_text
from tests.unit.docs.test_seed_examples import ENV, ROOT, as_config

EXAMPLES = ROOT / "examples"
OBSERVABILITY = EXAMPLES / "observability"
"""Prometheus files, not helio.yaml configs (tests/integration/test_observability_assets.py checks them)."""
DEPLOYMENT = EXAMPLES / "deployment"
"""Its compose file and Kubernetes manifests are not helio.yaml configs (tests/unit/deployment checks them)."""
DEPLOYMENT_ENV = {
    "HELIO_DATABASE_URL": "postgresql://helio:secret@db:5432/helio",
    "HELIO_UPSTREAM_URL": "http://upstream:8000/mcp",
    "HELIO_API_SECRET": "a" * 64,
    "HELIO_SDK_TOKEN": "t" * 64,
}
"""What examples/deployment/helio.yaml takes from the environment without a default."""
EXAMPLE_FILES = sorted(
    path
    for path in [*EXAMPLES.rglob("*.yaml"), *EXAMPLES.rglob("*.yml")]
    if not path.is_relative_to(OBSERVABILITY)
    and not (path.is_relative_to(DEPLOYMENT) and path.name != "helio.yaml")
)
REFUND_CONFIGS = sorted((EXAMPLES / "refund").glob("*.yaml"))


def _id(path: Path) -> str:
    return str(path.relative_to(EXAMPLES))


def test_the_examples_include_the_refund_configs() -> None:
    assert [p.name for p in REFUND_CONFIGS] == ["helio-produces.yaml", "helio-requires.yaml", "helio.yaml"]
    assert set(REFUND_CONFIGS) <= set(EXAMPLE_FILES)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=_id)
def test_every_example_yaml_loads(path: Path) -> None:
    config = parse_config_text(as_config(path), source=_id(path), env={**ENV, **DEPLOYMENT_ENV})
    assert config.version == "1"


@pytest.mark.parametrize("path", REFUND_CONFIGS, ids=_id)
def test_helio_validate_says_each_refund_config_is_valid_without_warnings(path: Path) -> None:
    result = CliRunner().invoke(cli, ["validate", "-c", str(path)])
    assert result.exit_code == 0, result.output
    assert f"Config is valid: {path} (" in result.output
    assert "arning" not in result.output


@pytest.mark.parametrize("path", REFUND_CONFIGS, ids=_id)
def test_refund_configs_name_only_tools_of_the_example_server(path: Path) -> None:
    from examples.refund.server import build_server

    tools = {tool.name for tool in asyncio.run(build_server().list_tools())}
    config = parse_config_text(path.read_text(), source=_id(path))
    named: set[str] = set()
    for rule in config.policies.rules:
        if rule.match.tool is not None:
            named.add(rule.match.tool)
        named.update(rule.requires)
        if rule.evidence is not None:
            # This example's convention: an evidence key is the name of the tool whose result it is.
            for item in rule.evidence.items():
                named.add(item.key)
                if item.from_ is not None:
                    named.add(item.from_)
            if rule.evidence.produces:
                named.add(rule.evidence.produces)
    assert named
    assert named <= tools, f"{sorted(named - tools)} are not tools of examples/refund/server.py"


@pytest.mark.parametrize("path", REFUND_CONFIGS, ids=_id)
def test_refund_configs_take_their_ports_from_the_environment_with_the_readme_defaults(path: Path) -> None:
    defaults = parse_config_text(path.read_text(), source=_id(path), env={})
    ports = {"REFUND_SERVER_PORT": "4101", "HELIO_PORT": "4100", "HELIO_SDK_PORT": "4102"}
    chosen = parse_config_text(path.read_text(), source=_id(path), env=ports)
    assert (defaults.upstream_list[0].url, defaults.listen.port) == ("http://127.0.0.1:3001/mcp", 3000)
    assert (chosen.upstream_list[0].url, chosen.listen.port) == ("http://127.0.0.1:4101/mcp", 4100)
    if defaults.sdk.enabled:
        assert (defaults.sdk.port, chosen.sdk.port) == (3200, 4102)
