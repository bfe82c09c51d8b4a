"""docker-compose.yml and the Dockerfile cannot run here (no Docker engine): check what can be checked."""

from __future__ import annotations

import importlib
import re

import pytest
import yaml
from pydantic_core import PydanticUndefined

from shared.settings import env_names
from tests.conftest import ROOT

SERVICES = ("giftcard_ledger", "redemption_ledger", "segment_engine", "marketing_view")
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def settings_class(service: str) -> type:
    return importlib.import_module(f"services.{service}.config").Settings


def test_every_service_is_in_compose_with_infrastructure_and_a_demo_profile() -> None:
    assert set(SERVICES) | {"kafka", "postgres", "redis", "topics"} <= set(COMPOSE["services"])
    assert "demo" in COMPOSE["services"]["simulator"]["profiles"]


@pytest.mark.parametrize("name", ["kafka", "postgres", "redis"])
def test_infrastructure_images_are_pinned(name: str) -> None:
    image = COMPOSE["services"][name]["image"]
    repository, _, tag = image.partition(":")
    assert tag and tag != "latest" and re.match(r"^\d", tag), image
    if name == "kafka":
        assert repository == "apache/kafka" and tag.startswith("4."), image


@pytest.mark.parametrize("service", SERVICES)
def test_service_environment_agrees_with_its_settings(service: str) -> None:
    spec = COMPOSE["services"][service]
    env = spec["environment"]
    known = env_names(settings_class(service))
    unknown = set(env) - set(known)
    assert not unknown, f"{service} sets variables its settings never read: {unknown}"
    cls = settings_class(service)
    required = {name for name, info in cls.model_fields.items() if info.default is PydanticUndefined
                and info.default_factory is None}
    provided = {known[name] for name in env}
    assert required <= provided, f"{service} lacks required settings {required - provided}"
    port = int(env[f"{service.upper()}_HTTP_PORT"])
    assert spec["ports"] == [f"{port}:{port}"]
    assert f":{port}/readyz" in " ".join(spec["healthcheck"]["test"])
    assert spec["command"] == [f"services.{service}"]


def test_marketing_view_runs_as_a_read_api_and_a_projector_of_the_same_image() -> None:
    api, projector = COMPOSE["services"]["marketing_view"], COMPOSE["services"]["marketing_view_projector"]
    assert api["environment"]["MARKETING_VIEW_ROLE"] == "api"
    assert projector["environment"]["MARKETING_VIEW_ROLE"] == "projector"
    assert projector["command"] == api["command"] == ["services.marketing_view"]
    known = env_names(settings_class("marketing_view"))
    assert set(projector["environment"]) <= set(known)
    port = int(projector["environment"]["MARKETING_VIEW_HTTP_PORT"])
    assert port != int(api["environment"]["MARKETING_VIEW_HTTP_PORT"])
    assert projector["ports"] == [f"{port}:{port}"]
    assert f":{port}/readyz" in " ".join(projector["healthcheck"]["test"])


def test_secrets_are_required_from_the_environment_not_written_in_the_file() -> None:
    for service in SERVICES:
        env = COMPOSE["services"][service]["environment"]
        assert env["MARKETING_API_KEY"].startswith("${MARKETING_API_KEY:?")
    assert COMPOSE["services"]["giftcard_ledger"]["environment"]["GIFTCARD_LEDGER_CARD_HMAC_KEY"].startswith("${")


def test_dockerfile_is_multi_stage_non_root_and_carries_no_secret() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and not users[-1].startswith(("root", "0")), users
    assert not re.search(r"^(ENV|ARG).*(KEY|SECRET|PASSWORD)", text, re.M)
    for line in re.findall(r"^FROM (\S+)", text, re.M):
        assert ":" in line and "latest" not in line, line
