"""`python -m infra.local.serve`: the whole product on this machine.

Starts LocalStack (moto + in-process step Lambdas + PostgreSQL with the demo database) and Chalice's local
dev server for the HTTP API. One Ctrl-C (or SIGTERM) stops everything.

Environment: API_PORT (default 8084), DATA_PIPELINE_DB_URL / PGVECTOR_DB_URL (use an existing PostgreSQL
instead of the embedded one), LLM_* and EMBEDDING_* (providers; without them the heuristic LLM and the
bundled MiniLM model are used), DATA_PIPELINE_API_KEY, DATA_PIPELINE_LOG_LEVEL.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any

from infra.local.stack import ROOT, LocalStack

logger = logging.getLogger("data_pipeline.serve")

API_BASE_PATH = "/api/v0"


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def apply_stage_environment(stage: str = "dev") -> Any:
    """The Chalice config of the stage; its environment variables fill what the environment leaves unset."""
    from chalice.cli.factory import CLIFactory

    config = CLIFactory(str(ROOT)).create_config_obj(chalice_stage_name=stage)
    for name, value in (config.environment_variables or {}).items():
        os.environ.setdefault(name, value)
    return config


def serve(host: str, port: int, *, load_demo: bool = True) -> None:
    from chalice.local import create_local_server

    stack = LocalStack(load_demo=load_demo)
    server = None
    try:
        config = apply_stage_environment()
        stack.start()
        logger.info("AWS services (moto): %s", stack.endpoint_url)
        logger.info("business database: %s", _masked(stack.db_url))
        logger.info("vector database: %s", _masked(stack.pgvector_url))
        server = create_local_server(stack.app, config, host, port)
        print(f"data_pipeline API ready on http://{host}:{port}{API_BASE_PATH}", flush=True)
        server.server.serve_forever()
    except KeyboardInterrupt:
        logger.info("stopping")
    finally:
        if server is not None:
            server.server.server_close()
        stack.stop()


def _masked(url: str | None) -> str:
    if not url:
        return "(none)"
    try:
        from chalicelib.pipeline.db import mask_url
    except ImportError:
        return url.split("@", 1)[-1]
    return mask_url(url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("API_PORT") or 8084))
    parser.add_argument("--no-demo", action="store_true", help="do not create/load the highway_demo database")
    args = parser.parse_args(argv)
    level = (os.environ.get("DATA_PIPELINE_LOG_LEVEL") or "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request access log
    logging.getLogger("pgserver").setLevel(logging.WARNING)  # every pg_ctl command line otherwise
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    serve(args.host, args.port, load_demo=not args.no_demo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
