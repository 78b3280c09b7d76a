"""Configuration: the ``helio.yaml`` schema and its loader."""

from helio_proxy.config.durations import Duration, seconds
from helio_proxy.config.loader import LoadedConfig, load_config, load_config_text, parse_config_text
from helio_proxy.config.root import HelioConfig

__all__ = [
    "Duration",
    "HelioConfig",
    "LoadedConfig",
    "load_config",
    "load_config_text",
    "parse_config_text",
    "seconds",
]
