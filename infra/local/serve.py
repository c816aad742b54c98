"""`python -m infra.local.serve`: the whole product on this machine.

Starts LocalStack (moto + step Lambdas in warm worker processes + PostgreSQL with the demo database) and
Chalice's local dev server for the HTTP API. One Ctrl-C (or SIGTERM) stops everything. It prints first where
the business data and the vectors are (passwords masked, each from the environment or embedded) and where
the local state is: tasks, files and logs persist in `<root>/.local/state` across restarts, kill -9 included.

Environment: API_PORT (default 8084), DATA_PIPELINE_DB_URL / PGVECTOR_DB_URL (use an existing PostgreSQL
instead of the embedded one, for the business data / the vectors), LLM_* and EMBEDDING_* (providers; without
them the heuristic LLM and the bundled MiniLM model are used), DATA_PIPELINE_API_KEY, DATA_PIPELINE_LOG_LEVEL,
DATA_PIPELINE_LOCAL_QUOTAS and DATA_PIPELINE_QUOTA_* (the AWS quotas enforced locally, infra/local/quotas.py).
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from chalicelib.api.auth import describe_local_auth
from infra.local.lambdas import DEFAULT_WORKERS
from infra.local.quotas import SWITCH, describe_quotas
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


def start_api_server(stack: LocalStack, host: str = "127.0.0.1", port: int = 0, *, stage: str = "dev") -> Any:
    """Chalice's local dev server for the stack's app, serving in a daemon thread; returns the LocalDevServer.

    Unknown paths and methods a route lacks are answered in the envelope, as API Gateway answers them with
    the gateway responses of the deployed API (infra/local/gateway.py). The stack must be started. Port 0
    picks a free port (read it back from `server.server.server_port`). Stop with `stop_api_server(server)`.
    """
    from chalice.local import CustomLocalChalice, LocalChalice, LocalDevServer

    from infra.local.gateway import EnvelopeRequestHandler

    config = apply_stage_environment(stage)
    app = stack.app
    app_class = app.__class__
    # What chalice.local.create_local_server does, with our request handler: the app's class becomes
    # Chalice's local one (undone by stop_api_server).
    CustomLocalChalice.__bases__ = (LocalChalice, app_class)
    app.__class__ = CustomLocalChalice
    server = LocalDevServer(app, config, host, port, handler_cls=EnvelopeRequestHandler)
    server.app_class = app_class
    server.port = server.server.server_port
    thread = threading.Thread(target=server.server.serve_forever, name="chalice-local", daemon=True)
    thread.start()
    server.thread = thread
    return server


def stop_api_server(server: Any) -> None:
    server.server.shutdown()
    server.server.server_close()
    server.thread.join(timeout=10)
    server.app_object.__class__ = server.app_class


def api_base_url(server: Any) -> str:
    return f"http://{server.host}:{server.port}{API_BASE_PATH}"


def serve(host: str, port: int, *, load_demo: bool = True, lambda_workers: int = DEFAULT_WORKERS,
          root: Path = ROOT) -> None:
    stack = LocalStack(root, load_demo=load_demo, lambda_workers=lambda_workers)
    server = None
    try:
        stack.start()
        print(startup_banner(stack), flush=True)
        server = start_api_server(stack, host, port)
        print(f"data_pipeline API ready on {api_base_url(server)}", flush=True)
        while server.thread.is_alive():
            server.thread.join(0.5)
    except KeyboardInterrupt:
        logger.info("stopping")
    finally:
        if server is not None:
            stop_api_server(server)
        stack.stop()


def startup_banner(stack: LocalStack) -> str:
    """What `make serve` prints first: where the business data, the vectors and the local state are (passwords
    masked), and whether each came from the environment or is embedded."""
    lines = ["data_pipeline local stack", f"  AWS services (moto): {stack.endpoint_url}",
             "  " + describe_local_auth()]
    if stack.databases is not None:
        lines += ["  " + line for line in stack.databases.describe()]
    if stack.persist:
        restored = stack.restored
        lines.append(f"  local state: {stack.state_dir}  [{restored.get('objects', 0)} files, "
                     f"{restored.get('items', 0)} task items restored]")
        if stack.interrupted:
            lines.append(f"  interrupted while the server was down, now failed: {', '.join(stack.interrupted)}")
    if stack.enforce_quotas:
        lines.append(f"  AWS quotas enforced ({SWITCH}=off turns them all off):")
        lines += ["    " + line for line in describe_quotas()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("API_PORT") or 8084))
    parser.add_argument("--no-demo", action="store_true", help="do not create/load the highway_demo database")
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="folder whose .local/ holds the embedded PostgreSQL and the persisted local state "
                             "(default: the repository)")
    parser.add_argument("--lambda-workers", type=int, default=DEFAULT_WORKERS,
                        help=f"worker processes running the step Lambdas (default {DEFAULT_WORKERS}; 0: in this "
                             "process)")
    args = parser.parse_args(argv)
    level = (os.environ.get("DATA_PIPELINE_LOG_LEVEL") or "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request access log
    logging.getLogger("pgserver").setLevel(logging.WARNING)  # every pg_ctl command line otherwise
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    serve(args.host, args.port, load_demo=not args.no_demo, lambda_workers=args.lambda_workers, root=args.root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
