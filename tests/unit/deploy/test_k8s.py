"""Kubernetes manifests: they parse, validate against the Kubernetes schemas, and agree with the settings."""

from __future__ import annotations

import importlib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from shared.settings import CommonSettings, env_names
from tests.conftest import ROOT

BASE = ROOT / "deploy" / "k8s" / "base"
OVERLAY = ROOT / "deploy" / "k8s" / "overlays" / "example"
LIBPQ_VARIABLES = {"PGPASSWORD"}  # read by asyncpg itself, not by our settings
CUSTOM_KINDS = {"ScaledObject"}  # KEDA's CRD: no schema in the Kubernetes bundle


def documents(folder: Path) -> list[dict]:
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    docs = []
    for resource in kustomization["resources"]:
        path = folder / resource
        assert path.exists(), f"{resource} listed in {folder.name}/kustomization.yaml does not exist"
        if path.is_file():
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


DOCS = documents(BASE)
DEPLOYMENTS = {d["metadata"]["name"]: d for d in DOCS if d["kind"] == "Deployment"}


# marketing_view runs as two Deployments of one module: the read API and the projector (MARKETING_VIEW_ROLE).
ROLES = {"marketing-view": "api", "marketing-view-projector": "projector"}


def module_of(deployment: str) -> str:
    return "marketing_view" if deployment in ROLES else deployment.replace("-", "_")


def test_a_deployment_per_service() -> None:
    assert set(DEPLOYMENTS) == {"giftcard-ledger", "redemption-ledger", "segment-engine", "marketing-view",
                                "marketing-view-projector"}


@pytest.mark.parametrize("name", sorted(ROLES))
def test_marketing_view_roles_and_their_scaling(name: str) -> None:
    container = DEPLOYMENTS[name]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MARKETING_VIEW_ROLE"] == ROLES[name]
    scaled = next(d for d in DOCS if d["kind"] == "ScaledObject" and d["metadata"]["name"] == name)
    trigger = scaled["spec"]["triggers"][0]["type"]
    assert trigger == ("cpu" if ROLES[name] == "api" else "kafka")
    if ROLES[name] == "projector":
        assert scaled["spec"]["maxReplicaCount"] <= 6, "never more consumers than partitions"
    ports = {int(DEPLOYMENTS[n]["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"])
             for n in ROLES}
    assert len(ports) == 2


@pytest.mark.parametrize("doc", [d for d in DOCS if d["kind"] not in CUSTOM_KINDS],
                         ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_resources_validate_against_the_kubernetes_schema(doc: dict) -> None:
    kubernetes_validate.validate(doc, "1.31.0", strict=True)


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_deployment_probes_resources_and_security(name: str) -> None:
    pod = DEPLOYMENTS[name]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    kinds = {(d["kind"], d["metadata"]["name"]) for d in DOCS}
    assert {("PodDisruptionBudget", name), ("ScaledObject", name), ("Service", name)} <= kinds


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_deployment_environment_agrees_with_the_service_settings(name: str) -> None:
    module = module_of(name)
    container = DEPLOYMENTS[name]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == [f"services.{module}"]
    known = env_names(importlib.import_module(f"services.{module}.config").Settings)
    names = {e["name"] for e in container["env"]}
    assert names - set(known) <= LIBPQ_VARIABLES, names - set(known)
    port = next(int(e["value"]) for e in container["env"] if e["name"].endswith("_HTTP_PORT"))
    assert container["ports"][0]["containerPort"] == port
    for e in container["env"]:
        assert "value" not in e or "KEY" not in e["name"] or e["name"].endswith("_FILE"), "secrets come from Secrets"


def test_config_map_holds_only_known_common_settings_and_no_secret() -> None:
    config = next(d for d in DOCS if d["kind"] == "ConfigMap")
    assert set(config["data"]) <= set(env_names(CommonSettings))
    assert not any("KEY" in k or "PASSWORD" in k for k in config["data"])


def test_topic_creation_job_runs_the_topology_module() -> None:
    job = next(d for d in DOCS if d["kind"] == "Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["shared.topology"]


def test_overlay_builds_on_the_base_and_generates_the_secret() -> None:
    overlay = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    assert "../../base" in overlay["resources"]
    generated = overlay["secretGenerator"][0]
    assert generated["name"] == "marketing-secrets"
    keys = {f.split("=")[0] for f in generated["files"]}
    referenced = set()
    for d in DEPLOYMENTS.values():
        pod = d["spec"]["template"]["spec"]
        for e in pod["containers"][0]["env"]:
            if "valueFrom" in e:
                referenced.add(e["valueFrom"]["secretKeyRef"]["key"])
        for v in pod.get("volumes", []):
            referenced |= {i["key"] for i in v.get("secret", {}).get("items", [])}
    assert referenced <= keys, referenced - keys
    for patch in overlay["patches"]:
        assert patch["target"]["name"] in DEPLOYMENTS or patch["target"]["kind"] == "ConfigMap"
