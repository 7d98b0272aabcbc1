"""``seq2seq-suggestions``: export, list and clear the corrections users sent to ``POST /suggest``.

    seq2seq-suggestions export --pair de-en --format tsv OUT [--since 2026-01-31] [--validation-fraction 0.1]
    seq2seq-suggestions list [--pair de-en] [--since DATE] [--limit N]
    seq2seq-suggestions clear [--pair de-en]

The store is the server's: ``--suggestions-db-path`` (env ``SEQ2SEQ_SUGGESTIONS_DB_PATH``, default
``db/suggestions.db``), or Redis with ``--shared-storage redis://HOST:PORT`` (env ``SEQ2SEQ_SHARED_STORAGE``).
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timezone

from serve.store.export import FORMATS, ExportError, export
from serve.store.suggestions import DEFAULT_DB_PATH, StoreUnavailable, SuggestionStore, open_suggestions


def parse_pair(text: str) -> tuple[str, str]:
    """``de-en`` -> ("de", "en"); argparse turns the ValueError into a usage error naming --pair."""
    src, sep, tgt = text.partition("-")
    if not sep or not src or not tgt or "-" in tgt or src == tgt:
        raise argparse.ArgumentTypeError(f"{text!r} is not a pair like de-en")
    return src, tgt


def parse_since(text: str) -> float:
    """An ISO date or date-time (``2026-01-31``, ``2026-01-31T12:00``, ``...+02:00``) -> Unix seconds;
    without a zone it is UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date like 2026-01-31 or 2026-01-31T12:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _format_time(t: float | None) -> str:
    return "-" if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def build_parser() -> argparse.ArgumentParser:
    store = argparse.ArgumentParser(add_help=False)  # accepted before or after the command
    store.add_argument(
        "--suggestions-db-path",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help=f"SQLite file (env SEQ2SEQ_SUGGESTIONS_DB_PATH; default {DEFAULT_DB_PATH})",
    )
    store.add_argument(
        "--shared-storage",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="redis://HOST:PORT to use the shared store (env SEQ2SEQ_SHARED_STORAGE)",
    )
    parser = argparse.ArgumentParser(
        prog="seq2seq-suggestions",
        description="Export, list and clear the corrections users sent to POST /suggest.",
        parents=[store],
    )
    commands = parser.add_subparsers(dest="command", required=True)

    ex = commands.add_parser("export", parents=[store], help="write a parallel corpus for scripts/train.py")
    ex.add_argument("out", metavar="OUT", help="output directory (train and validation split files)")
    ex.add_argument(
        "--pair", type=parse_pair, required=True, metavar="SRC-TGT", help="source-target, e.g. de-en"
    )
    ex.add_argument("--format", choices=FORMATS, default="tsv",
                    help="tsv: {split}.tsv with a header; text: line-aligned {split}.{lang}")  # fmt: skip
    ex.add_argument(
        "--since", type=parse_since, metavar="DATE", help="only suggestions from this date (UTC unless given)"
    )
    ex.add_argument(
        "--validation-fraction",
        type=float,
        default=0.1,
        help="share of source texts held out for validation; 0 validates on the training pairs",
    )
    ex.add_argument(
        "--all-targets",
        action="store_true",
        help="keep each distinct (q, s) pair instead of only the latest suggestion per q",
    )

    ls = commands.add_parser(
        "list", parents=[store], help="print suggestions as TSV: time, pair, q, s, client"
    )
    ls.add_argument("--pair", type=parse_pair, metavar="SRC-TGT")
    ls.add_argument("--since", type=parse_since, metavar="DATE")
    ls.add_argument("--limit", type=int, help="print at most this many (the latest)")

    cl = commands.add_parser("clear", parents=[store], help="delete suggestions (all, or one pair's)")
    cl.add_argument("--pair", type=parse_pair, metavar="SRC-TGT")
    return parser


def _open(args: argparse.Namespace, create: bool) -> SuggestionStore:
    db_path = getattr(args, "suggestions_db_path", None) or os.environ.get("SEQ2SEQ_SUGGESTIONS_DB_PATH")
    shared = getattr(args, "shared_storage", None) or os.environ.get("SEQ2SEQ_SHARED_STORAGE")
    try:
        return open_suggestions(db_path or DEFAULT_DB_PATH, shared, create=create)
    except StoreUnavailable as e:
        hint = "" if shared else " (set --suggestions-db-path or SEQ2SEQ_SUGGESTIONS_DB_PATH)"
        raise StoreUnavailable(f"{e}{hint}") from e


def _one_line(text: str | None) -> str:
    return "-" if text is None else text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def run(args: argparse.Namespace) -> int:
    store = _open(args, create=False)
    try:
        if args.command == "export":
            result = export(store.iter(args.pair, args.since), args.out, *args.pair, args.format,
                            args.validation_fraction, args.all_targets)  # fmt: skip
            print(
                f"read {result.read} suggestions, wrote {result.train} training and {result.validation} "
                f"validation pairs: {', '.join(str(f) for f in result.files)}",
                file=sys.stderr,
            )
        elif args.command == "list":
            rows = list(store.iter(args.pair, args.since))
            if args.limit is not None:
                rows = rows[-args.limit :] if args.limit > 0 else []
            for sug in rows:
                fields = (_format_time(sug.time), f"{sug.source}-{sug.target}", sug.q, sug.s, sug.client)
                print("\t".join(_one_line(f) for f in fields))
            print(f"{len(rows)} suggestions", file=sys.stderr)
        else:
            n = store.clear(args.pair)
            print(f"deleted {n} suggestions", file=sys.stderr)
    finally:
        store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (StoreUnavailable, ExportError) as e:
        print(f"seq2seq-suggestions: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
