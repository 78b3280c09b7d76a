"""The base every config model shares: strict, frozen, documented by attribute docstrings."""

from typing import Annotated, Final, TypeVar

from pydantic import BaseModel, ConfigDict


class ConfigModel(BaseModel):
    """Config sections reject unknown keys and are immutable once loaded.

    Each field's docstring is its documentation: ``docs/configuration.md`` is generated from it.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
        populate_by_name=True,
        validate_default=True,
    )


class SecretMarker:
    """Marks a field whose value (every string in it) is a credential of the proxy's.

    The config hash takes such values as their SHA-256 digests, and no stdio upstream inherits
    an environment variable holding one (:mod:`helio_proxy.config.digest`).
    """

    def __repr__(self) -> str:
        return "SECRET"


SECRET: Final = SecretMarker()

T = TypeVar("T")

Secret = Annotated[T, SECRET]
"""``Secret[str | None]``: a field holding a credential (see :class:`SecretMarker`)."""
