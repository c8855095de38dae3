"""``python -m model_runtime setup``: build (once) and install the patched llama-cpp-python."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "setup",
        help="build the patched llama-cpp-python wheel once (cached) and install it here",
        description="Download llama-cpp-python's source, apply the LLaVA class-token fix, build a wheel "
        "into the user cache and pip-install it into this interpreter. A second run reuses the wheel.",
    )
    parser.add_argument(
        "--rebuild", action="store_true", help="compile again even when a cached wheel exists"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from model_runtime.llama_build import LlamaBuildError, ensure_installed

    try:
        wheel = ensure_installed(rebuild=args.rebuild)
    except LlamaBuildError as exc:
        print(f"error: {exc}")
        return 1
    print(f"llama-cpp-python patched build ready: {wheel}")
    return 0
