"""The speaker-verification service behind ``audiocl serve``: a FastAPI app over the Python API.

It holds one :class:`~audiocl.app.api.Model` and one SQLite speaker store and has no scoring logic of
its own: every endpoint decodes the uploads, calls the API and returns JSON. Errors are the
library's (the same messages as the command line) as ``{"error": ..., "exit_code": ...}`` with a
4xx status: bad audio or silence 422, an unknown speaker 404, a store holding another model's
speakers or a name already taken 409, a bad argument (an invalid speaker name too) 400, a missing
or wrong token 401, a too large upload 413, an upload that stalls or trickles (slow loris) 408.

Uploads never become paths on the server: each is copied to a temporary file whose name the
server picks (only a known audio suffix of the client's file name is kept, for the decoder), in a
folder the service owns beside its store (the store's folder must be writable for SQLite anyway,
so a full or read-only system temp folder cannot fail requests), and error messages name the
upload by its field and client file name.
"""

import asyncio
import contextlib
import hmac
import os
import queue
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import (
    AudioclError,
    AudioError,
    ConfigError,
    DataError,
    ModelMismatchError,
    StoreArgumentError,
    StoreError,
    UnknownSpeakerError,
)
from ..io.audio import READ_EXTENSIONS
from ..scoring.operating_points import OPERATING_POINTS
from .api import Model, Speakers

WEB_DIR = Path(__file__).parent / "web"
# status of each library error (most specific first)
STATUS = (
    (UnknownSpeakerError, 404),
    (ModelMismatchError, 409),
    (StoreArgumentError, 400),  # a bad name or count: the request, not the store's state
    (StoreError, 409),
    (AudioError, 422),
    (DataError, 422),
    (ConfigError, 400),
    (AudioclError, 400),
)


def status_of(error: AudioclError) -> int:
    return next(code for cls, code in STATUS if isinstance(error, cls))


def _safe_label(filename: str | None, field: str) -> str:
    """How an upload is named in messages and in the store's file list: the client's base name
    (no folders, printable characters only), or the form field."""
    base = re.sub(r"[^\w.\- ]", "_", Path(filename or "").name)[:80]
    return f"{field}:{base}" if base else field


class Batcher:
    """Runs every request's embedding on one worker thread, merging what arrives together into
    one ``embed_waves`` call (so concurrent requests share forward passes, and torch's threads
    are not oversubscribed by one pool of threads per request). ``embed_waves`` groups
    utterances by length and an embedding never depends on its batch, so merging requests
    changes no result. ``wait``: seconds to wait for company after the first request."""

    def __init__(self, embed_waves: Callable, wait: float = 0.002):
        self.embed_waves, self.wait = embed_waves, wait
        self.jobs: queue.Queue = queue.Queue()
        threading.Thread(target=self._run, name="audiocl-batcher", daemon=True).start()

    def __call__(self, waves, progress=None):
        job = {"waves": list(waves), "done": threading.Event()}
        self.jobs.put(job)
        job["done"].wait()
        if "error" in job:
            raise job["error"]
        if progress:
            progress(len(job["waves"]))
        return job["result"]

    def _run(self) -> None:
        while True:
            jobs = [self.jobs.get()]
            deadline = time.monotonic() + self.wait
            while (left := deadline - time.monotonic()) > 0 or not self.jobs.empty():
                try:
                    jobs.append(self.jobs.get(timeout=max(left, 0.0)))
                except queue.Empty:
                    break
            try:
                emb = self.embed_waves([w for j in jobs for w in j["waves"]])
                at = 0
                for j in jobs:
                    j["result"], at = emb[at : at + len(j["waves"])], at + len(j["waves"])
            except Exception as e:  # every waiting request gets the error
                for j in jobs:
                    j["error"] = e
            for j in jobs:
                j["done"].set()


class UploadTimeout(Exception):
    """A request body stalled (no chunk for ``idle`` seconds) or ran past ``total`` seconds."""


class BodyDeadline:
    """ASGI middleware: a request body must keep coming (a chunk at least every ``idle``
    seconds) and end within ``total`` seconds, else the request ends with a 408 and the
    connection is closed. Without it a client trickling an upload holds its connection, its
    temp file and a parser for ever. Only the body is timed: a handler may wait for
    ``http.disconnect`` as long as it likes."""

    def __init__(self, app, idle: float, total: float):
        self.app, self.idle, self.total = app, min(idle, total), total

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        end, body_done, started, timed_out = loop.time() + self.total, False, False, False

        async def timed_receive():
            nonlocal body_done, timed_out
            if body_done:
                return await receive()
            left = end - loop.time()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, min(self.idle, left)))
            except asyncio.TimeoutError:
                timed_out = True
                raise UploadTimeout from None
            body_done = message["type"] != "http.request" or not message.get("more_body")
            return message

        async def timed_send(message):
            # the framework may answer the aborted parse itself (FastAPI: 400): say 408 instead
            nonlocal started
            if not timed_out:
                started = started or message["type"] == "http.response.start"
                await send(message)
            elif not started:
                started = True
                await self._too_slow(scope, send)

        try:
            await self.app(scope, timed_receive, timed_send)
        except UploadTimeout:
            if not started:  # else the 408 went out already, or a response was under way
                await self._too_slow(scope, send)

    async def _too_slow(self, scope, send) -> None:
        response = _error(
            f"upload too slow: a request body must arrive within {self.total:g} s, "
            f"with no pause over {self.idle:g} s",
            408,
            2,
        )
        response.headers["connection"] = "close"

        async def no_receive():
            return {"type": "http.disconnect"}

        await response(scope, no_receive, send)


class Service:
    """What the endpoints share: the model, the store path, the token, the upload limit."""

    def __init__(self, model: Model, db: str | os.PathLike, token: str | None, max_upload_mb):
        self.model, self.db, self.token = model, Path(db), token or None
        self.max_upload = int(max_upload_mb * 1024 * 1024)
        self.upload_dir = self.db.parent / ".audiocl-uploads"

    def speakers(self) -> Speakers:
        """The store bound to the model (one per request: SQLite connections are per call)."""
        return self.model.store(self.db)

    def authorized(self, header: str | None) -> bool:
        if self.token is None:
            return True
        scheme, _, given = (header or "").partition(" ")
        # bytes: compare_digest refuses non-ASCII str, and a client's header may hold any
        given_b, token_b = given.strip().encode("utf-8", "replace"), self.token.encode("utf-8")
        return scheme.lower() == "bearer" and hmac.compare_digest(given_b, token_b)

    @contextlib.contextmanager
    def uploads(self, *items: tuple[object, str]):
        """``(UploadFile, field)`` pairs -> ``(paths, labels)``: each upload in a temporary file
        named by the server, for the API to decode; an ``AudioError`` names the upload instead."""
        self.upload_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="request-", dir=self.upload_dir) as tmp:
            paths, labels = [], []
            for k, (upload, field) in enumerate(items):
                suffix = Path(upload.filename or "").suffix.lower()
                path = Path(tmp) / f"{k}{suffix if suffix in READ_EXTENSIONS else ''}"
                upload.file.seek(0)
                with open(path, "wb") as f:
                    shutil.copyfileobj(upload.file, f, 1 << 20)
                paths.append(str(path))
                labels.append(_safe_label(upload.filename, field))
            try:
                yield paths, labels
            except AudioError as e:
                names = dict(zip(paths, labels, strict=True))
                raise AudioError(names.get(e.path, e.path), e.reason) from None

    def health(self) -> dict:
        cal = self.model.calibration or {}
        return {
            "status": "ok",
            "model_id": self.model.model_id,
            "model": self.model.path.name if self.model.path else None,
            "embed_dim": self.model.embed_dim,
            "sample_rate": self.model.sample_rate,
            "calibrated": bool(cal),
            "llr_calibrated": bool(cal.get("llr")),
            "threshold": self.model.threshold()[0],
            "speakers": len(self.speakers()),
            "auth": self.token is not None,
            "max_upload_mb": self.max_upload / (1024 * 1024),
        }


def create_app(
    model: Model,
    db: str | os.PathLike,
    token: str | None = None,
    max_upload_mb: float = 20.0,
    batch: bool = True,
    upload_timeout: float = 120.0,
    upload_idle: float = 15.0,
):
    """The FastAPI application (``uvicorn.run(create_app(...))``). ``batch``: embed concurrent
    requests together on one thread (``Batcher``). ``upload_timeout``/``upload_idle``: seconds a
    request body may take in all / pause between chunks (``BodyDeadline``)."""
    from fastapi import FastAPI
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles

    svc = Service(model, db, token, max_upload_mb)
    if batch:  # the model's embedder is the service's own from here on
        model.embedder.embed_waves = Batcher(model.embedder.embed_waves)
    app = FastAPI(title="audiocl", version=_version(), docs_url="/api/docs", redoc_url=None)
    app.state.service = svc
    _add_guards(app, svc)
    _add_routes(app, svc)
    app.add_middleware(BodyDeadline, idle=upload_idle, total=upload_timeout)  # outermost

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    return app


def _error(message: str, status: int, exit_code: int):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": message, "exit_code": exit_code}, status_code=status)


def _add_guards(app, svc: Service) -> None:
    """Errors as JSON with the CLI's exit code; upload limits and the token on changes."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError

    @app.exception_handler(AudioclError)
    async def library_error(request: Request, e: AudioclError):
        return _error(str(e), status_of(e), e.exit_code)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, e: RequestValidationError):
        parts = [
            f"{'.'.join(str(x) for x in err.get('loc', ())[1:]) or 'request'}: {err.get('msg')}"
            for err in e.errors()
        ]
        return _error("; ".join(parts) or "bad request", 400, 2)

    @app.middleware("http")
    async def limits_and_auth(request: Request, call_next):
        if request.method in ("POST", "PUT", "DELETE") and request.url.path.startswith("/api/"):
            length = request.headers.get("content-length")
            if request.method != "DELETE" and length is None:
                return _error("uploads need a Content-Length header", 411, 2)
            if length is not None and not length.strip().isdigit():
                return _error(f"Content-Length must be a number of bytes, got {length!r}", 400, 2)
            if length is not None and int(length) > svc.max_upload:
                mb = svc.max_upload / (1024 * 1024)
                return _error(f"upload too large: over the {mb:g} MB limit", 413, 2)
            changes = request.url.path in ("/api/enroll",) or request.url.path.startswith(
                "/api/speakers/"
            )
            if changes and not svc.authorized(request.headers.get("authorization")):
                return _error("this server needs Authorization: Bearer <token>", 401, 2)
        return await call_next(request)


def _add_routes(app, svc: Service) -> None:
    """The JSON API under ``/api/``: the CLI's enroll, verify, identify and store commands."""
    from typing import Literal

    from fastapi import File, Form, UploadFile

    model = svc.model

    @app.get("/api/health")
    def health():
        return svc.health()

    @app.post("/api/enroll")
    def enroll(
        name: str = Form(...),
        audio: list[UploadFile] = File(...),
        replace: bool = Form(False),
    ):
        with svc.uploads(*((a, "audio") for a in audio)) as (paths, labels):
            record = svc.speakers().enroll(
                name, paths, mode="replace" if replace else "add", files=labels
            )
        return {"action": "enrolled", "speaker": record.to_dict(), "files": len(labels)}

    @app.post("/api/verify")
    def verify(
        audio: UploadFile = File(...),
        audio2: UploadFile | None = File(None),
        speaker: str | None = Form(None),
        threshold: float | None = Form(None),
        operating_point: Literal[("bayes", *OPERATING_POINTS)] | None = Form(None),
        prior: float = Form(0.5, gt=0.0, lt=1.0),
        far: float | None = Form(None, gt=0.0, lt=1.0),
    ):
        if (audio2 is None) == (speaker is None):
            raise ConfigError("verify needs audio2 (two recordings) or speaker (an enrolled one)")
        rule = (threshold, operating_point, "argument", prior, far)
        if speaker is not None:
            with svc.uploads((audio, "audio")) as (paths, labels):
                result = svc.speakers().verify(speaker, paths[0], *rule)
        else:
            model.threshold(*rule)  # a rule the calibration cannot answer: before the upload
            with svc.uploads((audio, "audio"), (audio2, "audio2")) as (paths, labels):
                result = model.verify(paths[0], paths[1], threshold, None, *rule[1:])
        return {**result.to_dict(), "speaker": speaker, "files": labels}

    @app.post("/api/identify")
    def identify(
        audio: UploadFile = File(...),
        top: int = Form(5),
        prior: float = Form(0.5, gt=0.0, lt=1.0),
    ):
        with svc.uploads((audio, "audio")) as (paths, labels):
            ranked = svc.speakers().identify(paths[0], top=top)
        candidates = []
        for n, s in ranked:
            llr, p = model.evidence(s, prior)
            candidates.append({"name": n, "score": s, "llr": llr, "p_same": p})
        return {"candidates": candidates, "prior": prior, "file": labels[0]}

    @app.get("/api/speakers")
    def speakers():
        return {"speakers": [r.to_dict() for r in svc.speakers().list()]}

    @app.delete("/api/speakers/{name}")
    def remove(name: str):
        return {"action": "removed", "speaker": svc.speakers().remove(name).to_dict()}

    @app.post("/api/speakers/{name}/rename")
    def rename(name: str, new: str = Form(...)):
        return {"action": "renamed", "speaker": svc.speakers().rename(name, new).to_dict()}


def _version() -> str:
    from .. import __version__

    return __version__
