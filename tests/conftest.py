"""Every test runs with its own temporary directory as the working directory, so a proxy started
without an explicit ``audit.path`` (default ``./helio-audit.db``) never writes into the repository.

And every audit record the proxy builds without validation (``AuditRecord.trusted``: each
``tools/call``'s record) is built validated as well, in every test that builds one in process:
the two must be equal, so a value of the wrong type fails the test that produced it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _isolated_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def _trusted_records_are_valid(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    try:
        from helio_proxy.audit.records import AuditRecord
    except ImportError:  # the SDK's isolated run, without the proxy installed
        yield
        return
    build = AuditRecord.trusted.__func__  # pyright: ignore[reportFunctionMemberAccess]

    def checked(cls: type[AuditRecord], values: dict[str, Any]) -> AuditRecord:
        record = build(cls, values)
        validated = cls.model_validate(dict(record.__dict__))  # the same ids and times the factories gave
        assert record == validated, f"{cls.__name__}.trusted({values!r}) differs from the validated record"
        assert record.model_dump() == validated.model_dump()
        return record

    monkeypatch.setattr(AuditRecord, "trusted", classmethod(checked))
    yield
