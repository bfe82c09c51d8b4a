"""Per-key token buckets: a burst passes, then the rate holds, and each key has its own bucket."""

from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from shared.auth import KeyStore, Scope, hash_key
from shared.ratelimit import TokenBucket, limited
from shared.settings import CommonSettings


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_rate_per_key() -> None:
    clock = FakeClock()
    bucket = TokenBucket(per_second=2, burst=3, clock=clock)
    assert [bucket.take("a") for _ in range(3)] == [0, 0, 0]
    assert bucket.take("a") == 0.5
    assert bucket.take("b") == 0, "another key has its own bucket"
    clock.now = 0.5
    assert bucket.take("a") == 0
    assert bucket.take("a") > 0


def test_http_answers_429_with_retry_after() -> None:
    app = FastAPI()
    app.state.keys = KeyStore.from_settings(CommonSettings(api_keys=f"{hash_key('k')}=read"))
    app.state.rate_limiter = TokenBucket(per_second=1, burst=2)

    @app.get("/x")
    def x(_: object = Depends(limited(Scope.READ))) -> dict[str, str]:
        return {}

    client = TestClient(app)
    headers = {"Authorization": "Bearer k"}
    codes = [client.get("/x", headers=headers).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    limited_response = client.get("/x", headers=headers)
    assert int(limited_response.headers["retry-after"]) >= 1
    assert client.get("/x").status_code == 401, "authentication comes before the limit"
