"""API keys: hashed configuration, scopes, the dev key, and clear 401/403 answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from shared.auth import KeyStore, Scope, hash_key, require
from shared.settings import CommonSettings


def store(**settings: object) -> KeyStore:
    return KeyStore.from_settings(CommonSettings(**settings))


def test_configured_keys_are_hashes_with_scopes() -> None:
    keys = store(api_keys=f"{hash_key('reader')}=read;{hash_key('staff')}=read,manage")
    reader, staff = keys.authenticate("reader"), keys.authenticate("staff")
    assert reader is not None and reader.scopes == {Scope.READ}
    assert staff is not None and staff.scopes == {Scope.READ, Scope.MANAGE}
    assert keys.authenticate("someone-else") is None
    assert keys.authenticate(hash_key("reader")) is None, "the hash itself is not a key"


def test_the_dev_key_has_every_scope() -> None:
    principal = store(marketing_api_key="dev-key").authenticate("dev-key")
    assert principal is not None and principal.scopes == set(Scope)


def test_keys_can_come_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# staff keys\n{hash_key('from-file')}=manage\n\n")
    principal = store(api_keys_file=path).authenticate("from-file")
    assert principal is not None and principal.scopes == {Scope.MANAGE}


@pytest.mark.parametrize("entry", ["plain-key=read", "sha256:abc=read", f"{hash_key('k')}=admin"])
def test_malformed_key_entries_are_refused_at_start(entry: str) -> None:
    with pytest.raises(ValueError):
        store(api_keys=entry)


def test_http_answers_401_without_a_valid_key_and_403_without_the_scope() -> None:
    app = FastAPI()
    app.state.keys = store(api_keys=f"{hash_key('reader')}=read")

    @app.get("/thing")
    def thing(_: object = Depends(require(Scope.MANAGE))) -> dict[str, str]:
        return {"ok": "yes"}

    client = TestClient(app)
    missing = client.get("/thing")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert client.get("/thing", headers={"Authorization": "Basic abc"}).status_code == 401
    assert client.get("/thing", headers={"Authorization": "Bearer nope"}).status_code == 401
    wrong_scope = client.get("/thing", headers={"Authorization": "Bearer reader"})
    assert wrong_scope.status_code == 403 and "manage" in wrong_scope.json()["detail"]
