"""``LeanRoute``: FastAPI's request handling for this API's route shapes, with less per-request work.

FastAPI's generic handler re-derives per request what never changes for a route: it walks the
dependency tree (cache keys, generator checks, four parameter lookups per dependency, query and
cookie parsing even when nothing reads them), parses the content type with ``email.message``,
extracts an endpoint context for error messages, and re-validates the response model the route
has just built from validated data. On a charge that was ~20 % of the API process's CPU.

``LeanRoute.get_route_handler`` looks at the route once. If its shape is one handled here (an
async endpoint returning its ``response_model``; path, query, header and cookie parameters; at
most one JSON body; ``Request`` and ``Response`` parameters; async dependencies that take only the
request, like ``Access`` and ``runtime``) it returns a handler doing FastAPI's steps in FastAPI's
order with FastAPI's own validation functions; any other route keeps FastAPI's handler.

Every route with a body reads it first with ``body.read_json`` (the API's one rule: JSON in
UTF-8; 415 or 400 otherwise), on both handlers. Per request, anything but the plain case (a
parameter or body that fails validation, dependency overrides, OpenTelemetry instrumentation)
is then handed, before any dependency has run, to FastAPI's handler, so every validation error
response, and the 401/404/403/429-before-422 order, is FastAPI's own. Validation is pure, so
doing it first changes nothing, and a request handed over is authenticated and rate-limited once.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.datastructures import DefaultPlaceholder
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import request_body_to_args, request_params_to_args
from fastapi.routing import APIRoute, serialize_response
from fastapi.telemetry import get_telemetry_data
from fastapi.utils import is_body_allowed_for_status_code
from pydantic import BaseModel
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY

from ledger.api.body import read_json

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def _async_callable(call: Any) -> bool:
    return inspect.iscoroutinefunction(call) or (
        not inspect.isroutine(call) and inspect.iscoroutinefunction(type(call).__call__))


def _request_only(dep: Dependant) -> str | None:
    """The parameter name if ``dep`` is an async dependency FastAPI calls with the request alone."""
    if not _async_callable(dep.call) or dep.dependencies or dep.concurrency is not None or any((
            dep.path_params, dep.query_params, dep.header_params, dep.cookie_params, dep.body_params,
            dep.response_param_name, dep.background_tasks_param_name, dep.security_scopes_param_name,
            dep.websocket_param_name)):
        return None
    return dep.request_param_name or dep.http_connection_param_name


class LeanRoute(APIRoute):
    """An ``APIRoute`` whose handler skips FastAPI's generic per-request work when it can (module doc)."""

    def get_route_handler(self) -> Handler:
        standard = super().get_route_handler()
        d = self.dependant
        if d.body_params:
            standard = _body_read_first(standard)
        model = self.response_model
        if not (
            _async_callable(d.call)
            and all(_request_only(sub) is not None for sub in d.dependencies)
            and len(d.body_params) <= 1 and not self._embed_body_fields
            and not (d.background_tasks_param_name or d.security_scopes_param_name or d.websocket_param_name)
            and not (self.is_json_stream or self.stream_item_field is not None)
            and isinstance(self.response_class, DefaultPlaceholder)
            and isinstance(model, type) and issubclass(model, BaseModel) and self.response_field is not None
            and self.response_model_by_alias
            and not (self.response_model_include or self.response_model_exclude or self.response_model_exclude_unset
                     or self.response_model_exclude_defaults or self.response_model_exclude_none)
        ):
            return standard
        return _lean_handler(self, model, standard)


def _body_read_first(standard: Handler) -> Handler:
    """FastAPI's handler, after the body passed the API's rule (FastAPI reads any ``+json`` type, and
    lets ``json`` guess UTF-16 and UTF-32)."""

    async def handler(request: Request) -> Response:
        await read_json(request)
        return await standard(request)

    return handler


def _lean_handler(route: LeanRoute, model: type[BaseModel], standard: Handler) -> Handler:
    d = route.dependant
    endpoint: Callable[..., Coroutine[Any, Any, Any]] = d.call  # type: ignore[assignment]
    subs = [(sub.name, sub.call, _request_only(sub) or "", sub.use_cache) for sub in d.dependencies]
    body_fields = d.body_params
    params: list[tuple[Any, Callable[[Request], Any]]] = [
        (fields, source) for fields, source in (
            (d.path_params, lambda r: r.path_params), (d.query_params, lambda r: r.query_params),
            (d.header_params, lambda r: r.headers), (d.cookie_params, lambda r: r.cookies)) if fields]
    overrides = route.dependency_overrides_provider
    status_code = route.status_code
    serializer = model.__pydantic_serializer__

    async def handler(request: Request) -> Response:
        if getattr(overrides, "dependency_overrides", None) or get_telemetry_data() is not None \
                or MAX_BODY_SIZE_SCOPE_KEY in request.scope:
            return await standard(request)
        values: dict[str, Any] = {}
        if body_fields:
            # Starlette keeps the bytes: FastAPI's handler, if handed the request, reads them again.
            body = await read_json(request)
            found, errors = await request_body_to_args(body_fields=body_fields, received_body=body,
                                                       embed_body_fields=False)
            if errors:
                return await standard(request)
            values.update(found)
        for fields, source in params:
            found, errors = request_params_to_args(fields, source(request))
            if errors:
                return await standard(request)
            values.update(found)
        # Past this point nothing is handed over: the dependencies (401/404/403/429 are raised
        # here, as in FastAPI) and the endpoint run exactly once.
        solved: dict[Any, Any] = {}
        for name, call, param, use_cache in subs:
            if use_cache and call in solved:
                value = solved[call]
            else:
                value = solved[call] = await call(**{param: request})  # type: ignore[misc]
            if name is not None:
                values[name] = value
        if d.request_param_name:
            values[d.request_param_name] = request
        if d.http_connection_param_name:
            values[d.http_connection_param_name] = request
        sub_response: Response | None = None
        if d.response_param_name:
            sub_response = Response()  # as FastAPI's: no status, no content-length of its own
            del sub_response.headers["content-length"]
            sub_response.status_code = None  # type: ignore[assignment]
            values[d.response_param_name] = sub_response
        result = await endpoint(**values)
        if isinstance(result, Response):
            return result
        if type(result) is model:
            # Built by the route from validated values: serialize it without validating it again.
            content = serializer.to_json(result, by_alias=True)
        else:
            content = await serialize_response(field=route.response_field, response_content=result,
                                               dump_json=True)
        status = status_code or (sub_response.status_code if sub_response is not None else None)
        if sub_response is not None and sub_response.status_code:
            status = sub_response.status_code
        response = Response(content=content, media_type="application/json")
        if status is not None:
            response.status_code = status
        if not is_body_allowed_for_status_code(response.status_code):
            response.body = b""
        if sub_response is not None:
            response.headers.raw.extend(sub_response.headers.raw)
        return response

    return handler
