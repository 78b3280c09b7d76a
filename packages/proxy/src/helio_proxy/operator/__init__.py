"""The operator plane: the REST API and live events on the dashboard port, and who may use them."""

from helio_proxy.operator.api import (
    ApiError,
    ApiRoute,
    OperatorApi,
    Param,
    error,
    ok,
    page,
    query_int,
    read_json,
    read_model,
    require,
)
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
    "Param",
    "Principal",
    "error",
    "ok",
    "page",
    "query_int",
    "read_json",
    "read_model",
    "require",
    "secret_digest",
]
