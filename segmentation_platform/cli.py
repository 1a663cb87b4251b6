"""`segmentation-platform generate | respond | demo`."""

import argparse
import sys
import warnings
from datetime import date
from pathlib import Path

from segmentation_platform import settings


def _print(line: str) -> None:
    print(line, flush=True)


def _generate(args: argparse.Namespace) -> int:
    from segmentation_platform.synthetic.generator import generate

    summary = generate(
        out_dir=Path(args.out),
        persons=args.persons,
        start=args.start,
        end=args.end,
        seed=args.seed,
        broken_share=args.broken_share,
        progress=_print,
    )
    _print(str(summary))
    return 0


def _respond(args: argparse.Namespace) -> int:
    import duckdb

    from segmentation_platform.synthetic.response import (
        ResponseError,
        parse_response_rates,
        simulate_response,
    )

    data_dir = Path(args.out)
    warehouse = Path(args.warehouse) if args.warehouse else data_dir / "warehouse.duckdb"
    if not warehouse.exists():
        _print(f"{warehouse} does not exist: ingest, segment and activate the snapshot first")
        return 2
    try:
        with duckdb.connect(str(warehouse), read_only=True) as conn:
            summary = simulate_response(
                data_dir,
                conn,
                args.snapshot,
                parse_response_rates(args.rate),
                seed=args.seed,
                exports_dir=Path(args.exports) if args.exports else None,
            )
    except ResponseError as error:
        _print(str(error))
        return 2
    _print(str(summary))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from segmentation_platform.demo import run_demo

    return run_demo(
        data_dir=Path(args.out),
        persons=args.persons,
        start=args.start,
        end=args.end,
        seed=args.seed,
        echo=_print,
    )


def _add_generation_args(parser: argparse.ArgumentParser, persons: int, start: str, end: str) -> None:
    parser.add_argument("--persons", type=int, default=persons, help="people in the simulated population")
    parser.add_argument(
        "--start", type=date.fromisoformat, default=date.fromisoformat(start), help="first day"
    )
    parser.add_argument("--end", type=date.fromisoformat, default=date.fromisoformat(end), help="last day")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--out", default=str(settings.DATA_DIR), help="writes OUT/landing and OUT/ground_truth"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segmentation-platform", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate", help="write synthetic landing files and their ground truth")
    _add_generation_args(generate, persons=10_000, start="2025-01-01", end="2025-12-31")
    generate.add_argument(
        "--broken-share", type=float, default=0.005, help="share of deliberately broken rows"
    )
    generate.set_defaults(handler=_generate)
    respond = commands.add_parser(
        "respond",
        help="simulate customers answering a snapshot's activation: campaign orders in landing/ with a "
        "known uplift per action segment (ground_truth/uplift.json)",
    )
    respond.add_argument(
        "--snapshot", type=date.fromisoformat, required=True, help="activated snapshot (a Monday)"
    )
    respond.add_argument(
        "--rate",
        action="append",
        default=[],
        metavar="SEGMENT=P",
        help="probability that a reached customer of SEGMENT places a campaign order; repeat per segment",
    )
    respond.add_argument("--seed", type=int, default=42)
    respond.add_argument(
        "--out", default=str(settings.DATA_DIR), help="data folder with landing/ and ground_truth/"
    )
    respond.add_argument("--warehouse", default=None, help="DuckDB file (default OUT/warehouse.duckdb)")
    respond.add_argument("--exports", default=None, help="exports folder (default OUT/exports)")
    respond.set_defaults(handler=_respond)
    demo = commands.add_parser(
        "demo", help="generate a small data set and materialize every asset in-process"
    )
    _add_generation_args(demo, persons=3_000, start="2025-01-01", end="2025-12-31")
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Dagster flags its source-code-link API as beta on every load; that is not news to a user.
    warnings.filterwarnings("ignore", message=r".*is currently in beta")
    if getattr(args, "start", None) and args.start < settings.PARTITIONS_START and args.command == "demo":
        _print(
            f"--start {args.start} is before the first partition {settings.PARTITIONS_START} (SEGMENTATION_START_DATE)"
        )
        return 2
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
