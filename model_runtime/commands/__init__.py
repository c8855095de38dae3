"""One module per ``python -m model_runtime`` subcommand.

Each module exposes ``register(subparsers) -> None`` (adds its parser; light imports only) and
``run(args) -> int`` (heavy imports inside). ``model_runtime.cli`` lists them.
"""
