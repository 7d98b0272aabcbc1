"""``seq2seq-keys``: add, remove and list API keys, as LibreTranslate's ``ltmanage keys``, in the
server's own store (``--shared-storage`` Redis or the ``--api-keys-db-path`` SQLite file), and
import a LibreTranslate ``api_keys.db``. Errors: one line on stderr, exit 1 (store) or 2 (usage)."""

from __future__ import annotations

import argparse
import os
import sys
import time

from serve.store.connection import StoreUnavailable, check_url
from serve.store.keys import DEFAULT_DB_PATH, KeyStore, open_key_store
from serve.store.keys_sqlite import read_libretranslate


def parse_args(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="seq2seq-keys", description="Manage the API keys of seq2seq-serve.")
    p.add_argument("--shared-storage", "--req-limit-storage", default=os.environ.get("SEQ2SEQ_SHARED_STORAGE"),
                   help="redis://host:port/db holding the keys (default: $SEQ2SEQ_SHARED_STORAGE; "
                        "without it the SQLite file)")  # fmt: skip
    p.add_argument("--api-keys-db-path", default=os.environ.get("SEQ2SEQ_API_KEYS_DB_PATH", DEFAULT_DB_PATH),
                   help=f"SQLite key file (default: $SEQ2SEQ_API_KEYS_DB_PATH or {DEFAULT_DB_PATH})")  # fmt: skip
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add = sub.add_parser("add", help="add a key (or give an existing one new limits); prints the key")
    add.add_argument("req_limit", type=int, metavar="REQ_LIMIT", help="requests per minute")
    add.add_argument("--char-limit", type=int, default=0, help="characters per text (0: the server's)")
    add.add_argument("--key", help="the key (default: a new random uuid4)")
    rm = sub.add_parser("remove", help="remove a key, given in full or by the id `list` shows")
    rm.add_argument("key", metavar="KEY")
    sub.add_parser("list", help="one line per key: id, first characters, limits (never the key)")
    imp = sub.add_parser("import-libretranslate", help="copy the keys of a LibreTranslate api_keys.db")
    imp.add_argument("path", metavar="PATH")
    args = p.parse_args(argv)
    if args.shared_storage:
        try:
            check_url(args.shared_storage)
        except ValueError as e:
            p.error(str(e))
    return p, args


def describe(store: KeyStore) -> None:
    entries = store.entries()
    if not entries:
        print("no API keys", file=sys.stderr)
    for e in entries:
        char = e.limits.char_limit if e.limits.char_limit is not None else "server"
        created = time.strftime("%Y-%m-%d", time.gmtime(e.created))
        print(
            f"{e.key_id}  {e.hint}...  req_limit={e.limits.req_limit}/min  char_limit={char}  added={created}"
        )


def run(store: KeyStore, args: argparse.Namespace) -> int:
    if args.command == "add":
        print(store.add(args.req_limit, args.char_limit, args.key))
    elif args.command == "remove":
        if not store.remove(args.key):
            print(f"seq2seq-keys: error: no such key in {store.describe()}", file=sys.stderr)
            return 1
        print(f"removed from {store.describe()}", file=sys.stderr)
    elif args.command == "list":
        describe(store)
    else:
        rows = read_libretranslate(args.path)
        for key, req_limit, char_limit in rows:
            store.add(req_limit, char_limit, key)
        print(f"imported {len(rows)} keys from {args.path} into {store.describe()}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> None:
    parser, args = parse_args(argv)
    store = open_key_store(args.shared_storage, args.api_keys_db_path)
    try:
        code = run(store, args)
    except ValueError as e:  # a bad limit, key or file: usage
        parser.exit(2, f"seq2seq-keys: error: {e}\n")
    except StoreUnavailable as e:
        parser.exit(1, f"seq2seq-keys: error: {e}\n")
    finally:
        for warning in sorted(getattr(store, "warnings", ())):
            print(f"seq2seq-keys: warning: {warning}", file=sys.stderr)
        store.close()
    sys.exit(code)


if __name__ == "__main__":
    main()
