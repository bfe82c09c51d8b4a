"""Secrets (the card HMAC key, API keys) come from the environment or mounted files: never the code, the image,
or the deployment files. (Rotation of the HMAC key: tests/integration/giftcards/test_giftcard_key_rotation.py.)"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from services.giftcard_ledger.app import hasher_of
from services.giftcard_ledger.config import Settings as GiftCardSettings
from shared.auth import KeyStore, Scope, hash_key
from shared.settings import CommonSettings
from tests.conftest import ROOT

SECRET_NAME = re.compile(r"(KEY|SECRET|PASSWORD|TOKEN)", re.IGNORECASE)
LOOKS_SECRET = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"AKIA[0-9A-Z]{16}"),
    re.compile(r"sha256:[0-9a-f]{64}\s*=\s*(read|manage)"),  # a configured key entry: deployments, not the repo
    re.compile(r"""(?i)\b\w*(secret|password|passwd|api_?key|hmac_?key|token)\w*\s*[:=]\s*["'][A-Za-z0-9_\-+/=.]{16,}["']"""),
    re.compile(r"(?i)postgres(ql)?://[^/\s:@]+:[^@\s/$]+@"),  # a password in a database URL
]


def _tracked() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / line for line in out.splitlines() if line and (ROOT / line).is_file()]


def test_no_secret_in_the_code_or_deployment_files() -> None:
    found = []
    for path in _tracked():
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("tests/") or path.suffix in {".png", ".jpg", ".ico", ".lock"}:
            continue  # tests use throw-away keys on purpose
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for pattern in LOOKS_SECRET:
            for match in pattern.finditer(text):
                found.append(f"{rel}: {match.group(0)[:40]}")
    assert found == []


def test_the_image_gets_no_secret_and_no_local_state() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if re.match(r"\s*(ENV|ARG)\b", line) or line.startswith(" "):
            assert not SECRET_NAME.search(line.split("#")[0]), line
    copied = {m.group(1) for m in re.finditer(r"^COPY\s+(?!--from)(.+?)\s+\S+$", dockerfile, re.MULTILINE)}
    sources = {s for line in copied for s in line.split()}
    assert sources <= {"pyproject.toml", "README.md", "shared", "services", "ops"}, sources


def test_compose_takes_secrets_from_the_environment() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    seen = 0

    def check(env: object) -> None:
        nonlocal seen
        if isinstance(env, dict):
            for name, value in env.items():
                if SECRET_NAME.search(str(name)) and not str(name).endswith("_FILE"):
                    seen += 1
                    assert re.fullmatch(r"\$\{\w+(:?[?-][^}]*)?\}", str(value)), (name, value)

    for section in compose.values():
        if isinstance(section, dict):
            for item in section.values():
                check(item)
                if isinstance(item, dict):
                    check(item.get("environment"))
    assert seen >= 2


def test_kubernetes_takes_secrets_from_secret_objects() -> None:
    seen = 0
    for path in (ROOT / "deploy" / "k8s").rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict):
                continue
            assert doc.get("kind") != "Secret" or (not doc.get("data") and not doc.get("stringData")), path
            for container in (doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []):
                for env in container.get("env") or []:
                    if SECRET_NAME.search(env["name"]):
                        seen += 1
                        assert env["name"].endswith("_FILE") or "secretKeyRef" in env.get("valueFrom", {}), env
    assert seen >= 4


def test_the_hmac_key_has_no_default_and_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GIFTCARD_LEDGER_CARD_HMAC_KEY", raising=False)
    monkeypatch.delenv("GIFTCARD_LEDGER_CARD_HMAC_PREVIOUS_KEYS", raising=False)
    with pytest.raises(RuntimeError, match="GIFTCARD_LEDGER_CARD_HMAC_KEY is required"):
        hasher_of(GiftCardSettings())  # called by the lifespan: the service does not start without it
    monkeypatch.setenv("GIFTCARD_LEDGER_CARD_HMAC_KEY", "k" * 32)
    monkeypatch.setenv("GIFTCARD_LEDGER_CARD_HMAC_PREVIOUS_KEYS", '["' + "o" * 32 + '"]')
    settings = GiftCardSettings()
    assert settings.card_hmac_key is not None and settings.card_hmac_key.get_secret_value() == "k" * 32
    assert [k.get_secret_value() for k in settings.card_hmac_previous_keys] == ["o" * 32]
    assert "k" * 32 not in repr(settings) + str(settings.model_dump())


def test_api_keys_come_hashed_from_the_environment_or_a_file(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    monkeypatch.delenv("MARKETING_API_KEY", raising=False)
    keys_file = tmp_path / "api-keys"
    keys_file.write_text(f"# mounted Secret\n{hash_key('from-a-file-key-123')}=read\n")
    monkeypatch.setenv("MARKETING_API_KEYS_FILE", str(keys_file))
    monkeypatch.setenv("MARKETING_API_KEYS", f"{hash_key('from-the-env-key-456')}=read,manage")
    store = KeyStore.from_settings(CommonSettings())
    from_file, from_env = store.authenticate("from-a-file-key-123"), store.authenticate("from-the-env-key-456")
    assert from_file is not None and from_file.scopes == {Scope.READ}
    assert from_env is not None and from_env.scopes == {Scope.READ, Scope.MANAGE}
    assert store.authenticate("from-a-file-key-12") is None
    monkeypatch.setenv("MARKETING_API_KEYS", "from-the-env-key-456=read")  # a plain key is refused
    with pytest.raises(ValueError, match="sha256"):
        KeyStore.from_settings(CommonSettings())
