"""``audiocl serve``: the speaker-verification service and its web page."""

from . import _common

HELP = "run the verification service (JSON API and a web page)"
DESCRIPTION = """Serve the model and the speaker store over HTTP: a JSON API for apps
(/api/enroll, /api/verify, /api/identify, /api/speakers, /api/health; /api/docs describes it) and,
at /, a page where a person can record or upload their voice, enrol, verify and identify.

  audiocl serve                              # http://127.0.0.1:8000, no token needed
  audiocl serve --host 0.0.0.0 --token T     # other machines: a token is required

With --token (or $AUDIOCL_TOKEN), enrol, rename and delete need the header
`Authorization: Bearer T`; the server refuses to listen beyond this machine without one.
Needs the serve extra: pip install 'audiocl[serve]'.
"""

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_arguments(p):
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_common.positive_int, default=8000, help="port (default 8000)")
    _common.add_model(p)
    _common.add_db(p)
    p.add_argument(
        "--token",
        default=None,
        help="require `Authorization: Bearer TOKEN` to change the store (default: "
        "$AUDIOCL_TOKEN; needed when --host is not a loopback address)",
    )
    p.add_argument(
        "--max-upload-mb",
        type=float,
        default=20.0,
        metavar="MB",
        help="refuse larger requests with 413 before reading them (default 20)",
    )
    p.add_argument(
        "--upload-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="answer 408 to a request whose body takes longer than S seconds in all, or pauses "
        "over min(15, S) seconds (slow clients holding connections; default 120)",
    )
    p.add_argument(
        "--no-batch",
        action="store_true",
        help="embed each request on its own thread instead of merging concurrent requests "
        "into shared forward passes on one thread",
    )


def run(args) -> int:
    import os

    from ...errors import ConfigError

    token = args.token or os.environ.get("AUDIOCL_TOKEN") or None
    if args.host not in LOOPBACK and not token:
        raise ConfigError(
            f"refusing to listen on {args.host} without a token: other machines could change "
            "the speaker store; pass --token (or set AUDIOCL_TOKEN), or use --host 127.0.0.1"
        )
    if not args.max_upload_mb > 0:
        raise ConfigError(f"--max-upload-mb must be > 0, got {args.max_upload_mb}")
    if not args.upload_timeout > 0:
        raise ConfigError(f"--upload-timeout must be > 0, got {args.upload_timeout}")
    try:
        import uvicorn

        from ..service import create_app
    except ImportError as e:
        raise ConfigError(
            f"audiocl serve needs the serve extra ({e.name} is missing): "
            "pip install 'audiocl[serve]'"
        ) from None
    model = _common.load_model(args)
    store = _common.open_store(args, model)  # a store of another model is refused now
    app = create_app(
        model,
        store.path,
        token,
        args.max_upload_mb,
        batch=not args.no_batch,
        upload_timeout=args.upload_timeout,
    )
    print(_common.model_line(model))
    print(f"speaker store: {store.path} ({len(store)} speakers)")
    print(f"serving on http://{args.host}:{args.port}/ (Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
