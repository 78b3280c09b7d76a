"""What the data plane found in one call: typed facts, turned into the audit record's
``metadata.data_plane`` by the recorder (:func:`helio_proxy.audit.recorder.data_plane_metadata`).

The check before the forward and the check of the answer each produce a :class:`DataPlaneFacts`;
the record holds both (:meth:`DataPlaneFacts.with_answer`), every finding with its scope.
"""

from __future__ import annotations

from dataclasses import dataclass

from helio_proxy.config.data_plane import Mode
from helio_proxy.dataplane.scanning import Finding
from helio_proxy.dataplane.schemas import SchemaError


@dataclass(frozen=True, slots=True)
class SchemaFacts:
    """A schema check that found errors, and the mode it ran in (``enforce`` or ``warn``)."""

    mode: Mode
    errors: tuple[SchemaError, ...]


@dataclass(frozen=True, slots=True)
class DataPlaneFacts:
    """``metadata.data_plane`` of one call's record (each field is left out while unset)."""

    credential: str | None = None
    """The name of the credential the upstream is reached with (never its value)."""
    rule: str | None = None
    """The policy rule whose ``data_plane`` settings applied."""
    unknown_tool: Mode | None = None
    """The mode of the unknown-tool check, when the tool was not listed."""
    input_schema: SchemaFacts | None = None
    output_schema: SchemaFacts | None = None
    findings: tuple[Finding, ...] = ()
    """Scan findings, the arguments' before the result's."""

    def __bool__(self) -> bool:
        return (
            self.credential is not None
            or self.rule is not None
            or self.unknown_tool is not None
            or self.input_schema is not None
            or self.output_schema is not None
            or bool(self.findings)
        )

    def with_answer(self, answer: DataPlaneFacts) -> DataPlaneFacts:
        """These facts (from before the forward) with what the check of the answer found."""
        return DataPlaneFacts(
            credential=self.credential if self.credential is not None else answer.credential,
            rule=self.rule if self.rule is not None else answer.rule,
            unknown_tool=self.unknown_tool if self.unknown_tool is not None else answer.unknown_tool,
            input_schema=self.input_schema if self.input_schema is not None else answer.input_schema,
            output_schema=answer.output_schema if answer.output_schema is not None else self.output_schema,
            findings=self.findings + answer.findings,
        )
