"""The HTTP face of :class:`~composeseg.pipelines.app.workspace.Workspace`: a FastAPI app and
the static page, both served by uvicorn on the loopback interface by default.

FastAPI and uvicorn come with ``pip install "composeseg[app]"``; they are imported when an app
is built, so the rest of composeseg never needs them.

Endpoints (JSON in and out; ``ID`` is an image id from ``GET /api/images``):

==========================================  ===================================================
``GET  /``                                  the page (``static/``: plain HTML, JS and CSS)
``GET  /api/config``                        model, pipelines available, class names
``GET  /api/images``                        ``[{id, name, saved}]``
``POST /api/images``                        upload: the raw file as the body (``image/*``)
``GET  /api/images/ID/picture``             the decoded pixels as PNG (JPEG above 4 MP)
``POST /api/images/ID/open``                encode (cached), objects, editor state
``POST /api/images/ID/prompt``              ``{point: [x, y], label: 1|0}`` or ``{box: [x0, y0,
                                            x1, y1]}``, pixels of the image -> editor state
``POST /api/images/ID/editor/ACTION``       ``undo``, ``redo``, ``clear``, ``select``
                                            (``{candidate: k}``)
``POST /api/images/ID/accept``              ``{class_name}``: the mask becomes an object
``POST /api/images/ID/pipelines/NAME``      ``everything``, ``detector``, ``text``
                                            (``{queries: [...]}``) -> proposals
``PATCH /api/images/ID/objects/OID``        ``{class_name?, accept?}``
``DELETE /api/images/ID/objects/OID``       delete an object
``POST /api/images/ID/objects/OID/refine``  edit an object again, from its box
``POST /api/images/ID/save``                write ``OUT/`` (see :mod:`.store`)
==========================================  ===================================================

A mask travels as a base64 PNG (1-bit palette, transparent background). Errors are 4xx with
``{"detail": message}``: 400 bad input (malformed JSON, NaN, points outside the image), 404
unknown ids, 413 too large, 415 an upload that is not an image; the server keeps serving.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations
# (``Request``, imported inside create_app) as objects when it builds the routes.
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composeseg.extras import MissingExtraError, require
from composeseg.pipelines.app.store import MAX_UPLOAD_BYTES, NotFound, TooLarge

if TYPE_CHECKING:
    from composeseg.pipelines.app.workspace import Workspace

STATIC = Path(__file__).resolve().parent / "static"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_JSON_BYTES = 1 << 20

# The page loads nothing from anywhere else, and the browser is told to enforce it.
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
    "object-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def create_app(
    workspace: "Workspace",
    *,
    allowed_hosts: tuple[str, ...] | None = LOOPBACK,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
) -> Any:
    """A FastAPI app serving ``workspace``.

    Args:
        workspace: the session (model, folder, output folder, pipelines).
        allowed_hosts: ``Host`` header names accepted (None: any). On the loopback interface
            this stops DNS-rebinding pages from reaching the API through a name of theirs.
        max_upload_bytes: the largest upload accepted.
    """
    fastapi = require("fastapi", extra="app", purpose="the interactive app")
    from fastapi import Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles

    app = fastapi.FastAPI(title="composeseg", docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def error(status: int) -> Callable[[Request, Exception], Any]:
        async def handler(request: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"detail": str(exc)}, status, headers=_HEADERS)

        return handler

    # OSError: a save that could not be written (disk full, permissions); the old record stays
    statuses: list[tuple[type[Exception], int]] = [
        (ValueError, 400),
        (MissingExtraError, 400),
        (NotFound, 404),
        (TooLarge, 413),
        (_Unsupported, 415),
        (OSError, 500),
    ]
    for exc, status in statuses:
        app.add_exception_handler(exc, error(status))

    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Any:
        if allowed_hosts is not None and request.url.hostname not in allowed_hosts:
            return JSONResponse({"detail": "host not allowed"}, 400)
        response = await call_next(request)
        for key, value in _HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # the model runs in a worker thread: the event loop keeps answering meanwhile
        return await run_in_threadpool(fn, *args, **kwargs)

    @app.get("/")
    async def page() -> Any:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/config")
    async def config() -> Any:
        return {**workspace.config(), "max_upload_bytes": max_upload_bytes}

    @app.get("/api/images")
    async def images() -> Any:
        return {"images": await call(workspace.list_images)}

    @app.post("/api/images")
    async def upload(request: Request) -> Any:
        kind = request.headers.get("content-type", "")
        # a non-"simple" content type: a cross-site form cannot send it without CORS approval
        if not kind.startswith(("image/", "application/octet-stream")):
            raise _Unsupported(f"upload the image file as the body (image/*), not {kind!r}")
        data = await _read(request, max_upload_bytes, "upload")
        return await call(workspace.upload, data)

    @app.get("/api/images/{image_id}/picture")
    async def picture(image_id: str) -> Any:
        from composeseg.pipelines.app.store import encode_picture

        data, media = encode_picture(await call(workspace.picture, image_id))
        return Response(data, media_type=media)

    @app.post("/api/images/{image_id}/open")
    async def open_image(image_id: str) -> Any:
        return await call(workspace.open, image_id)

    @app.post("/api/images/{image_id}/prompt")
    async def prompt(image_id: str, request: Request) -> Any:
        body = await _json(request, {"point", "label", "box"})
        return await call(workspace.prompt, image_id, **body)

    @app.post("/api/images/{image_id}/editor/{action}")
    async def edit(image_id: str, action: str, request: Request) -> Any:
        body = await _json(request, {"candidate"}, optional=True)
        return await call(workspace.edit, image_id, action, body.get("candidate"))

    @app.post("/api/images/{image_id}/accept")
    async def accept(image_id: str, request: Request) -> Any:
        body = await _json(request, {"class_name"})
        return await call(workspace.accept, image_id, body.get("class_name"))

    @app.post("/api/images/{image_id}/pipelines/{name}")
    async def pipeline(image_id: str, name: str, request: Request) -> Any:
        body = await _json(request, {"queries"}, optional=True)
        return await call(workspace.run_pipeline, image_id, name, body.get("queries"))

    @app.patch("/api/images/{image_id}/objects/{object_id}")
    async def update(image_id: str, object_id: int, request: Request) -> Any:
        body = await _json(request, {"class_name", "accept"})
        return await call(
            workspace.update_object,
            image_id,
            object_id,
            body.get("class_name"),
            body.get("accept", False),
        )

    @app.delete("/api/images/{image_id}/objects/{object_id}")
    async def delete(image_id: str, object_id: int) -> Any:
        return await call(workspace.delete_object, image_id, object_id)

    @app.post("/api/images/{image_id}/objects/{object_id}/refine")
    async def refine(image_id: str, object_id: int) -> Any:
        return await call(workspace.refine_object, image_id, object_id)

    @app.post("/api/images/{image_id}/save")
    async def save(image_id: str) -> Any:
        return await call(workspace.save, image_id)

    return app


class _Unsupported(ValueError):
    """A request body of the wrong type (HTTP 415)."""


async def _read(request: Any, limit: int, what: str) -> bytes:
    """The body, refused past ``limit`` bytes without reading the rest."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the {what} has {declared} bytes, more than the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the {what} is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


async def _json(request: Any, allowed: set[str], optional: bool = False) -> dict[str, Any]:
    """The body as a JSON object with no keys but ``allowed`` (NaN / Infinity refused)."""
    data = await _read(request, MAX_JSON_BYTES, "request body")
    if not data.strip() and optional:
        return {}
    try:
        body = json.loads(data, parse_constant=_no_constant)
    except ValueError as exc:  # JSONDecodeError and the NaN refusal above
        raise ValueError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError(f"the request body must be a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; expected {sorted(allowed)}")
    return body


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@contextmanager
def running(app: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a background thread; yields its URL (port 0: a free
    one, taken from the bound socket, so there is no race for it). For tests and benchmarks."""
    import socket

    uvicorn = require("uvicorn", extra="app", purpose="the interactive app")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say they are TCP;
    # without it every answer waits ~40 ms for the client's delayed ACK (Nagle)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server did not start")
            threading.Event().wait(0.01)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
