"""The CSV export for accounting: ``GET /v1/accounts/{account}/export.csv?from=&to=``, streamed.

The body is CSV, so what every read-model response says in JSON travels in headers:
``X-As-Of-Position`` and ``X-Lag-Ms``. Everything that can be refused (the key, the account, the
range) is checked before the first byte; the rows are then read a page at a time while the client
reads them (``projections.queries.export``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from ledger.api import schemas as s
from ledger.api.body import JsonBodyRoute
from ledger.api.deps import RT, Reader
from projections.queries import export as x

router = APIRouter(tags=["read models"], responses=s.ERRORS, route_class=JsonBodyRoute)

CSV = "text/csv; charset=utf-8"

@router.get(
    "/v1/accounts/{account}/export.csv", response_class=StreamingResponse,
    responses={200: {
        "description": "CSV with the header line `" + ",".join(x.COLUMNS) + "`, one line per usage event,"
                       " oldest first.",
        "content": {"text/csv": {"schema": {"type": "string"}}},
        "headers": {"X-As-Of-Position": {"description": "The log position the export reads as of.",
                                         "schema": {"type": "integer"}},
                    "X-Lag-Ms": {"description": "How long the oldest event not folded yet has waited (ms).",
                                 "schema": {"type": "integer"}}}}})
async def export_csv(
    account: str, rt: RT, who: Reader,
    start: Annotated[str | None, Query(alias="from", max_length=64, description=(
        "First moment included: a date (`2026-11-01`, UTC midnight) or a date and time with its offset."))] = None,
    end: Annotated[str | None, Query(alias="to", max_length=64, description=(
        "First moment left out, or a date whose whole day is included (`to=2026-11-30`: all of November 30)."))
    ] = None,
) -> StreamingResponse:
    """Usage for accounting: `date, workflow, agent, model, input_tokens, output_tokens, credits, status`
    (`status`: `charged`, `metered` or `in_debt`; see docs/api.md). Text a user chose is made safe
    for spreadsheets (a leading `=`, `+`, `-` or `@` gets a `'`)."""
    engine = rt.ledger.engine
    export = await x.open_export(engine, account, x.parse_range(start, end))
    return StreamingResponse(
        x.csv_chunks(engine, export), media_type=CSV,
        headers={"Content-Disposition": f'attachment; filename="{export.filename}"',
                 "X-As-Of-Position": str(export.freshness.as_of_position),
                 "X-Lag-Ms": str(export.freshness.lag_ms)})
