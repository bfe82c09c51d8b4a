"""HTTP routes of segment_engine (SPEC §7.1): translate requests to use cases and results to JSON. No logic."""

from __future__ import annotations

import base64
import binascii
from datetime import date, datetime
from typing import Annotated, Any

import asyncpg
import orjson
import yaml
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.segment_engine import domain, store
from services.segment_engine.handlers import (
    MAX_DESCRIPTION,
    MAX_NAME,
    RESERVED_IDS,
    Conflict,
    InvalidDocument,
    NotFound,
    PutResult,
    SegmentDefinition,
    SegmentEngine,
    parse_document,
)
from services.segment_engine.rules import RuleError, canonical
from shared.auth import Scope, require

SEGMENT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
CUSTOMER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$"
MAX_PAGE = 500
MAX_DOCUMENT_BYTES = 1_000_000

SegmentIdPath = Annotated[str, Path(pattern=SEGMENT_ID_PATTERN, max_length=64,
                                    description="Segment id: lowercase letters, digits, '-' and '_'")]
CustomerIdPath = Annotated[str, Path(pattern=CUSTOMER_ID_PATTERN, min_length=1, max_length=64)]

read = Depends(require(Scope.READ))
manage = Depends(require(Scope.MANAGE))


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SegmentIn(Strict):
    name: str = Field(min_length=1, max_length=MAX_NAME)
    description: str = Field("", max_length=MAX_DESCRIPTION)
    rule: dict[str, Any] = Field(description="The rule (SPEC §3.1), e.g. "
                                             '{"total_spend": {"min": "1000.00", "window_days": 365}}')


class PreviewIn(Strict):
    rule: dict[str, Any]
    limit: int | None = Field(None, ge=1, le=1000, description="How many customers to list on each side")


class MemberIn(Strict):
    customer_id: str = Field(min_length=1, max_length=64, pattern=CUSTOMER_ID_PATTERN)
    notes: str = Field("", max_length=domain.MAX_NOTES, description="Staff's note, shown in the grid")


class SweepIn(Strict):
    as_of: AwareDatetime | None = Field(None, description="Evaluate as of this moment instead of now")


def engine_of(request: Request) -> SegmentEngine:
    return request.app.state.engine  # type: ignore[no-any-return]


def _encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        value = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        value = ""
    if not value:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="invalid cursor")
    return value


def job_json(job: asyncpg.Record | None) -> dict[str, Any] | None:
    if job is None:
        return None
    total, processed = job["total"], job["processed"]
    done = job["status"] in ("done", "superseded", "failed")
    progress = 1.0 if job["status"] == "done" else (min(1.0, processed / total) if total else 0.0)
    return {
        "job_id": job["job_id"], "kind": job["kind"], "segment_id": job["segment_id"],
        "segment_version": job["segment_version"], "reason": job["reason"], "as_of": job["as_of"],
        "status": job["status"], "phase": job["phase"], "evaluated": job["evaluated"],
        "total": total, "processed": processed,
        "progress": round(progress, 4), "finished": done, "entered": job["entered"], "exited": job["exited"],
        "customers_changed": job["customers_changed"], "error": job["error"], "created_at": job["created_at"],
        "started_at": job["started_at"], "finished_at": job["finished_at"],
    }


def segment_json(row: asyncpg.Record, *, job: asyncpg.Record | None = None,
                 member_count: int | None = None) -> dict[str, Any]:
    out = {
        "segment_id": row["segment_id"], "name": row["name"], "description": row["description"],
        "rule": row["rule"], "version": row["version"], "created_at": row["created_at"],
        "updated_at": row["updated_at"], "backfill": job_json(job),
    }
    if member_count is not None:
        out["member_count"] = member_count
    return out


def membership_json(view_segment_name: str, m: domain.Membership) -> dict[str, Any]:
    return {
        "segment_id": m.segment_id, "segment_name": view_segment_name, "customer_id": m.customer_id,
        "member": m.is_member, "assigned_by": m.assigned_by.value if m.is_member else None,
        "date_assigned": m.member_since, "notes": m.notes if m.is_member else "",
        "manual": m.manual, "excluded": m.excluded, "rule_matches": m.rule_match,
    }


def _invalid(problems: list[tuple[str, str]], what: str) -> JSONResponse:
    summary = "; ".join(f"{p}: {m}" for p, m in problems[:5])
    return JSONResponse({"detail": f"invalid {what}: {summary}",
                         "errors": [{"field": p, "message": m} for p, m in problems]}, status_code=422)


def _rule(doc: dict[str, Any]) -> dict[str, Any] | JSONResponse:
    try:
        return canonical(doc)
    except RuleError as exc:
        return _invalid(exc.problems, "rule")


def _dump(payload: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload, default=_default), status_code=status_code,
                    media_type="application/json", headers=headers)


def _default(value: Any) -> Any:
    if isinstance(value, date | datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def _put_result_json(result: PutResult) -> dict[str, Any]:
    return {"outcome": result.outcome, **segment_json(result.segment, job=result.job)}


def build_router() -> APIRouter:
    router = APIRouter(tags=["segments"])

    # --- static paths first (their names are reserved as segment ids) -----------------------------------

    @router.get("/v1/segments", summary="List segments", dependencies=[read])
    async def list_segments(request: Request) -> Response:
        engine = engine_of(request)
        async with engine.pool.acquire() as conn:
            rows = await store.list_segments(conn)
            jobs = await store.latest_jobs(conn, [r["segment_id"] for r in rows])
            counts = await store.member_counts(conn)
        return _dump({"items": [segment_json(r, job=jobs.get(r["segment_id"]),
                                             member_count=counts.get(r["segment_id"], 0)) for r in rows]})

    @router.post("/v1/segments/sweep", summary="Sweep now: re-evaluate every segment as time passed",
                 status_code=202, dependencies=[manage])
    async def sweep(request: Request, body: SweepIn | None = None) -> Response:
        job = await engine_of(request).request_sweep(body.as_of if body else None)
        return _dump(job_json(job), 202, {"Location": f"/v1/segments/jobs/{job['job_id']}"})

    @router.get("/v1/segments/jobs/{job_id}", summary="A backfill or sweep job and its progress", dependencies=[read])
    async def get_job(request: Request, job_id: Annotated[int, Path(ge=1)]) -> Response:
        async with engine_of(request).pool.acquire() as conn:
            job = await store.get_job(conn, job_id)
        if job is None:
            raise HTTPException(404, detail=f"no job {job_id}")
        return _dump(job_json(job))

    @router.post("/v1/segments/apply", summary="Apply a YAML or JSON document of segments (idempotent)",
                 dependencies=[manage],
                 openapi_extra={"requestBody": {"content": {
                     "application/yaml": {"schema": {"type": "string"}},
                     "application/json": {"schema": {"type": "object"}}}, "required": True}})
    async def apply(request: Request) -> Response:
        raw = await request.body()
        if len(raw) > MAX_DOCUMENT_BYTES:
            raise HTTPException(413, detail=f"a document has at most {MAX_DOCUMENT_BYTES} bytes")
        try:
            if "json" in request.headers.get("content-type", ""):
                doc = orjson.loads(raw)
            else:
                doc = yaml.safe_load(raw.decode())
        except (orjson.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
            return _invalid([("body", f"not valid YAML or JSON: {str(exc)[:200]}")], "document")
        try:
            definitions = parse_document(doc)
        except InvalidDocument as exc:
            return _invalid(exc.problems, "document")
        try:
            results = await engine_of(request).apply_document(definitions)
        except Conflict as exc:
            raise HTTPException(409, detail=str(exc)) from None
        return _dump({"results": [_put_result_json(r) for r in results]})

    # --- one segment -----------------------------------------------------------------------------------

    @router.put("/v1/segments/{segment_id}", summary="Create or replace a segment (a new rule starts a backfill)",
                dependencies=[manage], responses={201: {"description": "Created"}, 200: {"description": "Replaced"}})
    async def put_segment(request: Request, segment_id: SegmentIdPath, body: SegmentIn) -> Response:
        if segment_id in RESERVED_IDS:
            raise HTTPException(422, detail=f"{segment_id!r} is reserved")
        rule = _rule(body.rule)
        if isinstance(rule, JSONResponse):
            return rule
        definition = SegmentDefinition(segment_id, body.name.strip(), body.description.strip(), rule)
        try:
            result = await engine_of(request).put_segment(definition)
        except Conflict as exc:
            raise HTTPException(409, detail=str(exc)) from None
        headers = {"Location": f"/v1/segments/{segment_id}"}
        return _dump(_put_result_json(result), 201 if result.outcome == "created" else 200, headers)

    @router.get("/v1/segments/{segment_id}", summary="A segment, its member count and latest backfill",
                dependencies=[read])
    async def get_segment(request: Request, segment_id: SegmentIdPath) -> Response:
        async with engine_of(request).pool.acquire() as conn:
            row = await store.get_segment(conn, segment_id)
            if row is None:
                raise HTTPException(404, detail=f"no segment {segment_id!r}")
            job = (await store.latest_jobs(conn, [segment_id])).get(segment_id)
            count = await store.member_count(conn, segment_id)
        return _dump(segment_json(row, job=job, member_count=count))

    @router.delete("/v1/segments/{segment_id}", summary="Delete a segment (members exit: segment_deleted)",
                   dependencies=[manage])
    async def delete_segment(request: Request, segment_id: SegmentIdPath) -> Response:
        try:
            removed = await engine_of(request).delete_segment(segment_id)
        except NotFound as exc:
            raise HTTPException(404, detail=str(exc)) from None
        return _dump({"segment_id": segment_id, "deleted": True, "members_removed": removed})

    @router.get("/v1/segments/{segment_id}/versions", summary="Every version of a segment", dependencies=[read])
    async def versions(request: Request, segment_id: SegmentIdPath) -> Response:
        async with engine_of(request).pool.acquire() as conn:
            rows = await store.segment_versions(conn, segment_id)
        if not rows:
            raise HTTPException(404, detail=f"no segment {segment_id!r}")
        return _dump({"segment_id": segment_id, "items": [dict(r) for r in rows]})

    @router.post("/v1/segments/{segment_id}/preview", summary="Who would enter and leave with this rule",
                 dependencies=[manage])
    async def preview(request: Request, segment_id: SegmentIdPath, body: PreviewIn) -> Response:
        rule = _rule(body.rule)
        if isinstance(rule, JSONResponse):
            return rule
        engine = engine_of(request)
        return _dump(await engine.preview(segment_id, rule, body.limit or engine.preview_limit))

    @router.get("/v1/segments/{segment_id}/backfills", summary="The segment's backfill jobs, newest first",
                dependencies=[read])
    async def backfills(request: Request, segment_id: SegmentIdPath,
                        limit: Annotated[int, Query(ge=1, le=100)] = 20) -> Response:
        async with engine_of(request).pool.acquire() as conn:
            rows = await store.segment_jobs(conn, segment_id, limit)
        return _dump({"items": [job_json(r) for r in rows]})

    @router.get("/v1/segments/{segment_id}/backfills/{job_id}", summary="One backfill and its progress",
                dependencies=[read])
    async def backfill(request: Request, segment_id: SegmentIdPath, job_id: Annotated[int, Path(ge=1)]) -> Response:
        async with engine_of(request).pool.acquire() as conn:
            job = await store.get_job(conn, job_id)
        if job is None or job["segment_id"] != segment_id:
            raise HTTPException(404, detail=f"no backfill {job_id} of segment {segment_id!r}")
        return _dump(job_json(job))

    # --- members ---------------------------------------------------------------------------------------

    async def _members(request: Request, segment_id: str, cursor: str | None, limit: int, excluded: bool) -> Response:
        async with engine_of(request).pool.acquire() as conn:
            segment = await store.get_segment(conn, segment_id)
            if segment is None:
                raise HTTPException(404, detail=f"no segment {segment_id!r}")
            rows = await store.members_page(conn, segment_id, after=_decode_cursor(cursor), limit=limit + 1,
                                            excluded=excluded)
        more = len(rows) > limit
        rows = rows[:limit]
        items = [{
            "customer_id": r["customer_id"],
            "date_assigned": r["member_since"],
            "assigned_by": None if excluded else ("manual" if r["manual"] else "automatic"),
            "notes": r["manual_notes"] if r["manual"] else r["match_notes"],
            "rule_matches": r["rule_match"], "excluded": r["excluded"], "updated_at": r["updated_at"],
        } for r in rows]
        return _dump({"segment_id": segment_id, "items": items,
                      "next_cursor": _encode_cursor(rows[-1]["customer_id"]) if more else None})

    @router.get("/v1/segments/{segment_id}/members", summary="Members, by customer id (cursor-paginated)",
                dependencies=[read])
    async def members(request: Request, segment_id: SegmentIdPath, cursor: str | None = None,
                      limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100) -> Response:
        return await _members(request, segment_id, cursor, limit, excluded=False)

    @router.get("/v1/segments/{segment_id}/exclusions", summary="Customers staff removed while the rule matched",
                dependencies=[read])
    async def exclusions(request: Request, segment_id: SegmentIdPath, cursor: str | None = None,
                         limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100) -> Response:
        return await _members(request, segment_id, cursor, limit, excluded=True)

    @router.post("/v1/segments/{segment_id}/members", summary="Add a customer by hand (sticky)",
                 dependencies=[manage])
    async def add_member(request: Request, segment_id: SegmentIdPath, body: MemberIn) -> Response:
        try:
            view = await engine_of(request).add_member(segment_id, body.customer_id, body.notes.strip())
        except NotFound as exc:
            raise HTTPException(404, detail=str(exc)) from None
        return _dump(membership_json(view.segment_name, view.membership), 201 if view.entered else 200)

    @router.delete("/v1/segments/{segment_id}/members/{customer_id}",
                   summary="Remove a customer (a rule-based member is excluded until the exclusion is cleared)",
                   dependencies=[manage])
    async def remove_member(request: Request, segment_id: SegmentIdPath, customer_id: CustomerIdPath) -> Response:
        try:
            view = await engine_of(request).remove_member(segment_id, customer_id)
        except (NotFound, domain.NotAMember) as exc:
            raise HTTPException(404, detail=str(exc)) from None
        return _dump(membership_json(view.segment_name, view.membership))

    @router.delete("/v1/segments/{segment_id}/exclusions/{customer_id}",
                   summary="Clear an exclusion (the rule decides again)", dependencies=[manage])
    async def clear_exclusion(request: Request, segment_id: SegmentIdPath, customer_id: CustomerIdPath) -> Response:
        try:
            view = await engine_of(request).clear_exclusion(segment_id, customer_id)
        except (NotFound, domain.NotExcluded, domain.NotAMember) as exc:
            raise HTTPException(404, detail=str(exc)) from None
        return _dump(membership_json(view.segment_name, view.membership))

    # --- one customer ----------------------------------------------------------------------------------

    @router.get("/v1/customers/{customer_id}/segments", summary="A customer's segments, with explanations",
                dependencies=[read])
    async def customer_segments(request: Request, customer_id: CustomerIdPath) -> Response:
        found = await engine_of(request).customer_segments(customer_id)
        segments, evaluations = [], []
        for e in found["evaluations"]:
            row, live = e["row"], e["live"]
            member = row is not None and (row["manual"] or (row["rule_match"] and not row["excluded"]))
            if member:
                segments.append({
                    "segment_id": e["segment_id"], "name": e["name"], "date_assigned": row["member_since"],
                    "assigned_by": "manual" if row["manual"] else "automatic",
                    "notes": row["manual_notes"] if row["manual"] else row["match_notes"],
                })
            evaluations.append({
                "segment_id": e["segment_id"], "name": e["name"], "version": e["version"], "member": member,
                "manual": bool(row and row["manual"]), "excluded": bool(row and row["excluded"]),
                "rule_matches": bool(live and live["matches"]),
                "explanation": live["explanation"] if live else "unknown customer: no facts",
            })
        return _dump({"customer_id": customer_id, "known": found["known"], "as_of": found["as_of"],
                      "business_day": found["business_day"], "segments": segments, "evaluations": evaluations})

    @router.get("/v1/customers/{customer_id}/segments/history",
                summary="Every entry into and exit from a segment, newest first", dependencies=[read])
    async def customer_history(request: Request, customer_id: CustomerIdPath, cursor: str | None = None,
                               limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
                               segment_id: Annotated[str | None, Query(pattern=SEGMENT_ID_PATTERN)] = None,
                               ) -> Response:
        before = _decode_cursor(cursor)
        if before is not None and not before.isdigit():
            raise HTTPException(400, detail="invalid cursor")
        async with engine_of(request).pool.acquire() as conn:
            rows = await store.history_page(conn, customer_id, before=int(before) if before else None,
                                            limit=limit + 1, segment_id=segment_id)
        more = len(rows) > limit
        rows = rows[:limit]
        items = [{k: r[k] for k in ("segment_id", "segment_name", "segment_version", "action", "reason",
                                    "assigned_by", "notes", "business_day", "at")} for r in rows]
        return _dump({"customer_id": customer_id, "items": items,
                      "next_cursor": _encode_cursor(str(rows[-1]["id"])) if more else None})

    return router
