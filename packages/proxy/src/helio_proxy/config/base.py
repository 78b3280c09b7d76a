"""The base every config model shares: strict, frozen, documented by attribute docstrings."""

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
