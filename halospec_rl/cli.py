"""The ``halospec-rl`` command. Subcommands live in :data:`SUBCOMMANDS` (name -> :class:`Subcommand`);
add one by defining its ``add_arguments`` and ``run`` and registering it there."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from halospec_rl.calibration import add_calibrate_arguments, run_calibrate
from halospec_rl.server import add_serve_arguments, run_serve


@dataclass(frozen=True)
class Subcommand:
    """``add_arguments(parser)`` declares the flags; ``run(args)`` returns the exit code."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _build_arguments(parser: argparse.ArgumentParser) -> None:
    from halospec_rl.decoder.train import CONFIGS

    parser.add_argument("--config", choices=sorted(CONFIGS), default="full", help="model sizes to build")
    parser.add_argument(
        "--cache-dir", default=None, help="model cache (default: $HALOSPEC_CACHE_DIR or the user cache dir)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads while training (default 1; 2 is faster on an idle 2-core machine)",
    )


def _build_run(args: argparse.Namespace) -> int:
    from halospec_rl.decoder.train import build, is_built

    already = is_built(args.config, args.cache_dir)
    directory = build(args.config, args.cache_dir, progress=True, num_threads=args.threads)
    print(f"{'already built' if already else 'built'}: {directory}")
    return 0


SUBCOMMANDS: dict[str, Subcommand] = {
    "build": Subcommand("train and cache the decoder models ahead of time", _build_arguments, _build_run),
    "serve": Subcommand(
        "serve the embedded decoder over an OpenAI-compatible HTTP API", add_serve_arguments, run_serve
    ),
    "calibrate": Subcommand(
        "fit a simulator preset to a recorded trace and report its error per draft length",
        add_calibrate_arguments,
        run_calibrate,
    ),
}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="halospec-rl", description="halospec-rl: tune the draft length of speculative decoding."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, sub in SUBCOMMANDS.items():
        sub.add_arguments(subparsers.add_parser(name, help=sub.help, description=sub.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    return SUBCOMMANDS[args.command].run(args)


if __name__ == "__main__":
    sys.exit(main())
