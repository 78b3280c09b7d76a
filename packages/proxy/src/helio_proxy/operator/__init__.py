"""The operator plane: the REST API and live events on the dashboard port, and who may use them."""

from helio_proxy.operator.api import ApiError, ApiRoute, OperatorApi, error, ok, page, query_int, read_json
from helio_proxy.operator.auth import OperatorAuth, Principal, secret_digest
from helio_proxy.operator.events import EVENT_TYPES, Event, EventBus

__all__ = [
    "EVENT_TYPES",
    "ApiError",
    "ApiRoute",
    "Event",
    "EventBus",
    "OperatorApi",
    "OperatorAuth",
    "Principal",
    "error",
    "ok",
    "page",
    "query_int",
    "read_json",
    "secret_digest",
]
