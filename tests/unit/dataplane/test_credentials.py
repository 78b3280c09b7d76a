"""Static credentials: from the environment or a file, as a header or a stdio child's variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from helio_proxy.config.data_plane import CredentialsConfig
from helio_proxy.dataplane.credentials import CredentialMissing, provider_for


async def test_a_bearer_token_comes_from_the_environment_when_it_is_needed() -> None:
    environ = {"TOKEN": "t1"}
    provider = provider_for(CredentialsConfig(type="bearer", from_env="TOKEN"), "gh", environ)
    assert provider is not None
    assert provider.name == "gh:bearer"
    assert await provider.headers() == {"authorization": "Bearer t1"}
    environ["TOKEN"] = "t2"  # rotated: the next request takes the new one
    assert await provider.headers() == {"authorization": "Bearer t2"}


async def test_a_header_from_a_file_and_a_missing_file_fails_without_the_value(tmp_path: Path) -> None:
    secret = tmp_path / "key"
    secret.write_text("  file-secret\n")
    config = CredentialsConfig(type="header", header="X-Api-Key", from_file=str(secret), name="search")
    provider = provider_for(config, "s", {})
    assert provider is not None
    assert await provider.headers() == {"x-api-key": "file-secret"}
    secret.unlink()
    with pytest.raises(CredentialMissing) as caught:
        await provider.headers()
    assert caught.value.data["failure_reason"] == "credential_unavailable"
    assert caught.value.delivered is False  # a call that never left is not charged


def test_a_stdio_credential_is_an_environment_variable_for_the_child() -> None:
    provider = provider_for(
        CredentialsConfig(type="env", env_var="GH_TOKEN", from_env="PROXY_GH"), "g", {"PROXY_GH": "v"}
    )
    assert provider is not None
    assert provider.environment() == {"GH_TOKEN": "v"}
    with pytest.raises(CredentialMissing, match="PROXY_GH is not set"):
        provider_for(
            CredentialsConfig(type="env", env_var="GH_TOKEN", from_env="PROXY_GH"), "g", {}
        ).environment()  # pyright: ignore[reportOptionalMemberAccess]
