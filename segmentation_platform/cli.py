"""`segmentation-platform generate | demo`."""

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
