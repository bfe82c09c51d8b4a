"""docs/operations.md lists every setting, generated from the settings classes, and is current."""

from __future__ import annotations

import importlib

from ops.settings_doc import DOC, SERVICES, render
from shared.settings import CommonSettings, env_names


def test_the_settings_reference_is_current() -> None:
    assert render() in DOC.read_text(), "run `python -m ops.settings_doc` to regenerate docs/operations.md"


def test_every_variable_of_every_service_is_documented() -> None:
    text = render()
    classes = [CommonSettings] + [importlib.import_module(f"services.{s}.config").Settings for s in SERVICES]
    for cls in classes:
        for var in env_names(cls):
            assert f"`{var}`" in text, var
