"""Export formats: a JSON array, or CSV (RFC 4180) with every column, objects as JSON text.

CSV cells that a spreadsheet would run as a formula (text starting with ``= + - @``, a tab or a
carriage return) get a leading ``'`` (CWE-1236). Numbers are written as numbers and never
prefixed. Column order is the reference's 29 columns, then ``config_sha256`` and ours.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

EXPORT_COLUMNS: Final = (
    "id",
    "timestamp",
    "session_id",
    "agent_id",
    "tool_name",
    "tool_input",
    "policy_decision",
    "block_reason",
    "matched_rule",
    "evidence_chain",
    "approval_status",
    "approved_by",
    "upstream_response",
    "upstream_error",
    "upstream_http_status",
    "upstream_latency_ms",
    "total_duration_ms",
    "approval_wait_ms",
    "proxy_compute_ms",
    "flagged_destructive",
    "dry_run",
    "created_at",
    "environment",
    "matched_rule_index",
    "record_kind",
    "origin",
    "metadata",
    "session_source",
    "protocol_version",
    "config_sha256",
    "success",
    "seq",
    "prev_hash",
    "hash",
    "signature",
)

ExportFormat = Literal["json", "csv"]

_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str | int | float:
    """One value as a CSV cell: JSON for objects, ``true``/``false``, empty for null, formula-safe text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if text.startswith(_FORMULA_STARTS):
        return "'" + text
    return text


def to_csv(records: Iterable[Mapping[str, Any]]) -> str:
    """Records (decoded rows) as CSV text with a header line and CRLF line ends."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    for record in records:
        writer.writerow([csv_cell(record.get(name)) for name in EXPORT_COLUMNS])
    return out.getvalue()


def to_json(records: Iterable[Mapping[str, Any]]) -> str:
    """Records as a JSON array of objects (columns in export order)."""
    rows = [{name: record.get(name) for name in EXPORT_COLUMNS} for record in records]
    return json.dumps(rows, ensure_ascii=False, indent=2) + "\n"


def render(records: Iterable[Mapping[str, Any]], fmt: ExportFormat) -> str:
    return to_csv(records) if fmt == "csv" else to_json(records)
