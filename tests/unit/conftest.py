"""The governance store for unit tests: every test that asks for ``store`` runs twice, on SQLite
(a temp file) and on the local PostgreSQL (a fresh schema; failing, not skipping, when it is down).

Folders whose tests mean an in-memory session store by ``store`` (evidence, sideband) define their
own fixture of that name, which takes precedence there.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from helio_proxy.store import Store
from helio_proxy.store.testing import Backend, temporary_store


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.param


@pytest.fixture
def store(backend: Backend, tmp_path: Path) -> Iterator[Store]:
    with temporary_store(backend, tmp_path) as opened:
        yield opened
