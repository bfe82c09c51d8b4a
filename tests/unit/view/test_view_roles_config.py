"""MARKETING_VIEW_ROLE and MARKETING_VIEW_WORKERS: what each role runs, and which combinations are refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.marketing_view.config import Settings


@pytest.mark.parametrize(("role", "serves_api", "projects"),
                         [("all", True, True), ("api", True, False), ("projector", False, True)])
def test_what_each_role_runs(role: str, serves_api: bool, projects: bool) -> None:
    settings = Settings(role=role)  # type: ignore[arg-type]
    assert (settings.serves_api, settings.projects) == (serves_api, projects)


def test_the_default_role_does_everything_in_one_process() -> None:
    fields = Settings.model_fields
    assert fields["role"].default == "all" and fields["workers"].default == 1


def test_unknown_role_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(role="reader")  # type: ignore[arg-type]


def test_several_workers_serve_the_api_only_and_need_a_session_secret() -> None:
    assert Settings(role="api", workers=2, session_secret="s").workers == 2
    with pytest.raises(ValidationError, match="api' role only"):
        Settings(role="projector", workers=2, session_secret="s")
    with pytest.raises(ValidationError, match="api' role only"):
        Settings(role="all", workers=2, session_secret="s")
    with pytest.raises(ValidationError, match="session_secret"):
        Settings(role="api", workers=2, session_secret=None)
