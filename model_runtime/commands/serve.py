"""``python -m model_runtime serve``: the local HTTP API the FreeCAD workbench talks to."""

from __future__ import annotations

import argparse
import sys

from model_runtime import protocol


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the local HTTP API (127.0.0.1 only, bearer token) for the FreeCAD workbench",
        description="Serve the runtime's HTTP API on loopback. On first start a token is written to the "
        "user's config folder (mode 0600); every request must send it as 'Authorization: Bearer "
        "<token>'. The server's URL and pid go to server.json beside it while it runs. Code execution "
        "works without a model; generate jobs need a backend (see --backend, --model).",
        epilog="API schema: GET /openapi.json (with the token). Stop with Ctrl+C.",
    )
    parser.add_argument(
        "--host",
        default=protocol.DEFAULT_HOST,
        help="loopback address to bind: 127.0.0.1 (default), localhost or ::1; other addresses are refused",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=protocol.DEFAULT_PORT,
        help=f"TCP port (default {protocol.DEFAULT_PORT}; 0 picks a free one)",
    )
    parser.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "hf", "gguf", "remote", "none"),
        help="model backend for generate jobs (default auto; none serves exec only)",
    )
    parser.add_argument("--model", help="GGUF file or folder, or an HF LLaVA folder / cached Hub id")
    parser.add_argument("--mmproj", help="the GGUF model's mmproj file (found beside --model if omitted)")
    parser.add_argument("--adapter", help="a LoRA adapter folder for the hf backend")
    parser.add_argument("--remote-url", help="OpenAI-compatible server for the remote backend")
    parser.add_argument("--workers", type=int, default=2, help="sandbox worker processes (default 2)")
    parser.add_argument(
        "--exec-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="default time limit for running one program (default 10 s)",
    )
    parser.add_argument(
        "--memory-mb",
        type=int,
        default=2048,
        metavar="MB",
        help="memory one program may use on top of a warm worker (default 2048)",
    )
    parser.add_argument(
        "--max-jobs", type=int, default=1, help="generate jobs run at once; more wait in a queue (default 1)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from model_runtime.server import NonLoopbackHost, ServerConfig, check_loopback, serve

    try:
        check_loopback(args.host)
    except NonLoopbackHost as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.workers < 1 or args.max_jobs < 1 or args.exec_timeout <= 0:
        print("error: --workers and --max-jobs must be at least 1, --exec-timeout positive", file=sys.stderr)
        return 2
    config = ServerConfig(
        host=args.host,
        port=args.port,
        sandbox_workers=args.workers,
        exec_timeout_s=args.exec_timeout,
        memory_mb=args.memory_mb,
        max_concurrent_jobs=args.max_jobs,
        backend="auto" if args.backend == "none" else args.backend,
        model=args.model,
        mmproj=args.mmproj,
        adapter=args.adapter,
        remote_url=args.remote_url,
        load_backend=args.backend != "none",
    )
    return serve(config)
