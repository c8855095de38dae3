"""``python -m model_runtime``: one argparse parser, one subcommand per module in ``commands/``.

Command modules are imported by name from a fixed list; one that does not exist yet is skipped,
and one that fails to import still shows up in ``--help`` and explains its failure when run, so
the CLI itself always starts.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from model_runtime import __version__

# Order is the order of ``--help``.
COMMANDS = ("generate", "exec", "parametrize", "serve", "doctor", "setup", "eval")
PROG = "python -m model_runtime"
# Commands that run generated or untrusted input in the sandbox: they take --allow-uncontained.
SANDBOXED = ("generate", "exec", "serve", "doctor", "eval", "parametrize")
_ALLOW_HELP = (
    "run generated code even where no operating-system jail works (with your user's rights); "
    "same as CADSNAP_ALLOW_UNCONTAINED=1"
)


def _no_backend_yet(args: argparse.Namespace) -> int:
    print(
        "error: no model backend is available in this installation yet, so `generate` cannot run.\n"
        "The sandbox works: run a CadQuery file with `python -m model_runtime exec part.py -o part.step`,\n"
        "and `python -m model_runtime doctor` shows what is installed.",
        file=sys.stderr,
    )
    return 2


def _register_generate_fallback(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="picture in, CadQuery code and solid out (no backend installed yet)",
        description="Generate CadQuery code from a picture of a part. No model backend is installed in "
        "this build yet; this command says so and exits with status 2.",
    )
    parser.add_argument("image", nargs="?", help="the picture of the part")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.set_defaults(run=_no_backend_yet)


def _register_broken(subparsers: argparse._SubParsersAction, name: str, error: BaseException) -> None:
    message = f"{type(error).__name__}: {error}"

    def report(args: argparse.Namespace) -> int:
        print(
            f"error: the '{name}' command cannot load ({message}); "
            "`python -m model_runtime doctor` lists what is missing",
            file=sys.stderr,
        )
        return 2

    parser = subparsers.add_parser(name, help=f"(unavailable: {message})", add_help=True)
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.set_defaults(run=report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="CadSnap model runtime: picture of a part in, editable CadQuery solid out.",
        epilog="Run `python -m model_runtime COMMAND --help` for a command's options. "
        "Start with `doctor` to see what is installed.",
    )
    parser.add_argument("--version", action="version", version=f"cadsnap {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages to stderr")
    parser.add_argument("--allow-uncontained", action="store_true", help=_ALLOW_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module_name = f"model_runtime.commands.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # not written yet: skip it
                if name == "generate":
                    _register_generate_fallback(subparsers)
                continue
            _register_broken(subparsers, name, exc)
            continue
        except Exception as exc:  # a bug in one command must not take the others down
            _register_broken(subparsers, name, exc)
            continue
        module.register(subparsers)
        sub = subparsers.choices.get(name)
        if sub is not None and sub.get_default("run") is None and hasattr(module, "run"):
            sub.set_defaults(run=module.run)
        if sub is not None and name in SANDBOXED:
            sub.add_argument("--allow-uncontained", action="store_true", default=argparse.SUPPRESS,
                             help=_ALLOW_HELP)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.allow_uncontained:
        from model_runtime.sandbox.jail import ALLOW_UNCONTAINED_ENV

        os.environ[ALLOW_UNCONTAINED_ENV] = "1"  # read by every sandbox pool this process starts
    run = getattr(args, "run", None)
    if run is None:
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
