"""Build hook: the catalogs go inside the package in a regular wheel only.

The recipes and env specs live at the top of the checkout (`tasks/`, `envs/`) for editing; a
wheel carries them as `metarl/catalog/{tasks,envs}`. An editable install must not: it reads
them from the checkout (`metarl.registry.catalog_dir`), and copying them into
`site-packages/metarl/catalog` left a `metarl` folder without a module in site-packages, which
Python imports as an empty namespace package whenever the checkout is not on the path ("No
module named 'metarl.cli'" from the installed command). Hatchling's `force-include` setting
applies to editable wheels too, hence a hook that only acts on the standard one.
"""

from __future__ import annotations

from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

CATALOGS = {"tasks": "metarl/catalog/tasks", "envs": "metarl/catalog/envs"}


class CatalogHook(BuildHookInterface):  # type: ignore[misc]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name == "wheel" and version == "standard":
            build_data["force_include"].update(CATALOGS)
