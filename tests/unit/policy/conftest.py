"""Builders shared by the policy unit tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from helio_proxy.config import HelioConfig
from helio_proxy.policy import CompiledPolicy, compile_policy

PolicyFactory = Callable[..., CompiledPolicy]


def config_with(rules: list[dict[str, Any]] | None = None, **root: Any) -> HelioConfig:
    """A minimal valid config around ``rules``; ``policies_*`` keywords go under ``policies``."""
    policies: dict[str, Any] = {"rules": rules or []}
    for key in list(root):
        if key.startswith("policies_"):
            policies[key.removeprefix("policies_")] = root.pop(key)
    data: dict[str, Any] = {
        "version": "1",
        "upstream": {"url": "http://127.0.0.1:9/mcp"},
        "dashboard": {"api_secret": "s" * 32},
        "policies": policies,
        **root,
    }
    return HelioConfig.model_validate(data)


@pytest.fixture
def make_policy() -> PolicyFactory:
    def build(rules: list[dict[str, Any]] | None = None, **root: Any) -> CompiledPolicy:
        return compile_policy(config_with(rules, **root))

    return build
