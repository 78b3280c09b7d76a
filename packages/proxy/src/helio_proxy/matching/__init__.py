"""Pure matching primitives (tool-name globs, JSONPath, regex safety), stdlib only.

Below both :mod:`helio_proxy.config` (which validates rules with them) and
:mod:`helio_proxy.policy` (which compiles rules with them), so neither imports the other's way up.
"""
