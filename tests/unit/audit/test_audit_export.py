import csv
import io
import json

import pytest

from helio_proxy.audit.export import EXPORT_COLUMNS, csv_cell, to_csv, to_json


@pytest.mark.parametrize("dangerous", ["=1+1", "+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx"])
def test_csv_cells_that_would_run_as_formulas_get_a_quote_prefix(dangerous: str) -> None:
    """CWE-1236: a leading = + - @ tab or CR gets a ' prefix."""
    assert csv_cell(dangerous) == "'" + dangerous


def test_numbers_and_booleans_are_never_prefixed() -> None:
    assert csv_cell(-5) == -5
    assert csv_cell(True) == "true"
    assert csv_cell(None) == ""


def test_csv_is_rfc4180_with_objects_as_json_text() -> None:
    record = {
        "id": "r1",
        "tool_name": 'say "hi",\nthen go',
        "tool_input": {"a": [1, 2], "b": "x"},
        "flagged_destructive": False,
        "upstream_http_status": 200,
    }
    text = to_csv([record])
    assert text.startswith(",".join(EXPORT_COLUMNS) + "\r\n")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert rows[0]["tool_name"] == 'say "hi",\nthen go'
    assert json.loads(rows[0]["tool_input"]) == {"a": [1, 2], "b": "x"}
    assert rows[0]["flagged_destructive"] == "false"
    assert rows[0]["upstream_http_status"] == "200"


def test_json_export_keeps_objects_and_every_column() -> None:
    exported = json.loads(to_json([{"id": "r1", "tool_input": {"a": 1}}]))
    assert list(exported[0]) == list(EXPORT_COLUMNS)
    assert exported[0]["tool_input"] == {"a": 1}
