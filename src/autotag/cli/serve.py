"""`autotag serve`: the HTTP API and web page under uvicorn."""

from __future__ import annotations

import typer

from autotag.cli.app import DB_HELP, command


@command(
    "serve",
    help="Serve the HTTP API (docs at /docs) and the web page (at /).\n\n"
    "Example: autotag serve --host 127.0.0.1 --port 8000 --db library.db",
)
def serve_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port (0 picks a free one)."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    model: str | None = typer.Option(None, "--model", "-m", help="Default model: encoder name or model folder."),
    api_keys: str | None = typer.Option(
        None,
        "--api-keys",
        help="Comma-separated keys; write endpoints then need X-API-Key (or AUTOTAG_API_KEYS).",
    ),
    protect_reads: bool = typer.Option(False, "--protect-reads", help="With API keys, require one for reads too."),
    max_upload_bytes: int | None = typer.Option(None, "--max-upload-bytes", min=1, help="Largest upload accepted."),
    max_pixels: int | None = typer.Option(None, "--max-pixels", min=1, help="Refuse images above this many pixels."),
    preload: bool = typer.Option(False, "--preload", help="Load the model and index before accepting requests."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level: debug, info, warning, error."),
) -> None:
    import logging
    import os

    # Per request numpy only does tiny matrix products; OpenBLAS threads fighting the request threads
    # and ONNX Runtime for the cores made one of them 50x slower under load. Set before numpy loads.
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1, user_api="blas")  # in case numpy was already loaded
    except ImportError:
        pass

    import uvicorn

    from autotag.api.app import create_app
    from autotag.config import load_settings

    settings = load_settings(model=model, api_keys=api_keys, max_upload_bytes=max_upload_bytes, max_pixels=max_pixels)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings, db=db, protect_reads=protect_reads, preload=preload)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=10)
