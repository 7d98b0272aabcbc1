"""The command line of ``seq2seq-serve``: every option, also as a ``SEQ2SEQ_*`` environment variable.

A variable is the option's name in capitals with ``SEQ2SEQ_`` in front (``--max-chars``:
``SEQ2SEQ_MAX_CHARS``), so a container or a Helm values file configures the server without a
command line; the command line wins over the environment. argparse has no such hook, hence
``environment_defaults``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

HOSTS = ("127.0.0.1", "0.0.0.0", "::")  # the only hosts LitServe accepts
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def env_names(action: argparse.Action) -> list[str]:
    """``SEQ2SEQ_`` + each long name of the option, the first one documented (aliases work too)."""
    names = [o.lstrip("-").replace("-", "_").upper() for o in action.option_strings if o.startswith("--")]
    return ["SEQ2SEQ_" + n for n in names if not n.startswith("NO_")]


def environment_defaults(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """Each option's default from its variable, converted and checked as the option would be."""
    for action in parser._actions:  # argparse's list of options: it has no public accessor
        if not action.option_strings or action.dest == "help":
            continue
        names = env_names(action)
        name = next((n for n in names if environ.get(n)), names[0])
        action.help = f"{action.help or ''} [${names[0]}]".strip()
        raw = environ.get(name)
        if raw is None or raw == "":
            continue
        if action.nargs == 0:  # a flag: store_true or --x/--no-x
            if raw.lower() not in TRUE + FALSE:
                parser.error(f"${name} must be one of {', '.join(TRUE + FALSE)}, not {raw!r}")
            value = raw.lower() in TRUE
        else:
            convert = action.type or str
            parts = (
                [p.strip() for p in raw.split(",")] if isinstance(action, argparse._AppendAction) else [raw]
            )
            try:
                values = [convert(p) for p in parts]
            except (TypeError, ValueError):
                parser.error(f"${name}: {raw!r} is not a valid value for {action.option_strings[0]}")
            for v in values:
                if action.choices is not None and v not in action.choices:
                    parser.error(f"${name} must be one of {', '.join(map(str, action.choices))}, not {v!r}")
            value = values if isinstance(action, argparse._AppendAction) else values[0]
        parser.set_defaults(**{action.dest: value})
        action.required = False


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="seq2seq-serve", description="Serve a seq2seq checkpoint over HTTP.")
    p.add_argument("--checkpoint", action="append", required=True,
                   help="model .ckpt file, or a folder of them; repeat for more language pairs "
                        "(in the variable: comma-separated)")  # fmt: skip
    p.add_argument("--host", default="127.0.0.1", choices=HOSTS)
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="inference processes, each with its own model")
    p.add_argument(
        "--threads", type=int, default=0,
        help="torch threads per worker (default: cores // workers; continuous greedy steps use one "
             "fewer, beam steps all; 1 is better on a busy machine)",
    )  # fmt: skip
    p.add_argument(
        "--pin-cpus", action="store_true",
        help="give each worker --threads cores of its own and the HTTP processes the others "
             "(default --threads with it: all cores but one, shared by the workers)",
    )  # fmt: skip
    p.add_argument("--max-batch-size", type=int, default=16, help="requests batched together")
    p.add_argument(
        "--batch-timeout",
        type=float,
        default=0.0,
        help="seconds a busy worker may wait for a batch to fill (0: take what is queued)",
    )
    p.add_argument(
        "--continuous", action=argparse.BooleanOptionalAction, default=True,
        help="requests join a running greedy or beam search between steps (--no-continuous: batches only)",
    )  # fmt: skip
    p.add_argument("--quantize", choices=("none", "int8"), default="none", help="dynamic int8 on CPU")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the workers run the model (auto: a GPU when there is one)")  # fmt: skip
    p.add_argument("--api-key", help="require this X-API-Key header")
    p.add_argument("--char-limit", "--max-chars", dest="max_chars", type=int, default=1000,
                   help="characters per text (a key's own char_limit replaces it)")  # fmt: skip
    p.add_argument("--batch-limit", "--max-texts", dest="max_texts", type=int, default=64,
                   help="texts per request; a batch of N texts counts as N requests")  # fmt: skip
    p.add_argument("--max-beam", type=int, default=10, help="largest beam_size")
    p.add_argument("--max-length", type=int, default=256, help="output tokens per text (also the default)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds a request may wait in the queue")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.add_argument("--log-format", default="text", choices=("text", "json"),
                   help="json: one JSON object per line, and one line per request")  # fmt: skip
    add_access_options(p)
    add_libretranslate_options(p)
    environment_defaults(p, os.environ)
    args = p.parse_args(argv)
    for name in (
        "port",
        "workers",
        "max_batch_size",
        "max_chars",
        "max_texts",
        "max_beam",
        "max_length",
    ):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.threads < 0:
        p.error("--threads must be >= 0 (0: cores // workers)")
    check_access_options(p, args)
    for name in ("files_ttl", "files_max_bytes", "files_max_chars"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be above 0")
    if not 1024 <= args.port <= 65535:
        p.error("--port must be between 1024 and 65535")
    if args.batch_timeout < 0:
        p.error("--batch-timeout must be >= 0 (0: batch only what is already queued)")
    return args


def add_access_options(p: argparse.ArgumentParser) -> None:
    """LibreTranslate's keys, limits and proxy options (``serve.ops.ratelimit``, ``serve.ops.proxy``)."""
    g = p.add_argument_group("keys, limits and proxies")
    g.add_argument(
        "--shared-storage",
        "--req-limit-storage",
        help="redis://host:port/db holding keys, limit counters, bans and the translation "
        "cache for every replica (default: this host's shared memory and --api-keys-db-path)",
    )
    g.add_argument("--api-keys", action="store_true", help="check API keys against the key store")
    g.add_argument(
        "--api-keys-db-path",
        default="db/api_keys.db",
        help="SQLite key file when there is no --shared-storage (seq2seq-keys edits it)",
    )
    g.add_argument(
        "--api-keys-required",
        "--under-attack",
        action="store_true",
        help="refuse translation requests without an API key",
    )
    for window, per in (("req-limit", "minute"), ("hourly-req-limit", "hour"), ("daily-req-limit", "day")):
        g.add_argument(
            f"--{window}",
            type=int,
            default=-1,
            help=f"requests per {per} per API key, or per client address without one, over "
            "every HTTP process and replica (-1 or 0: none, the default)",
        )
    g.add_argument(
        "--req-flood-threshold",
        type=int,
        default=-1,
        help="ban an address refused 429 this many times within 10 minutes (-1: never)",
    )
    g.add_argument(
        "--translation-cache",
        default="",
        help="API keys (comma-separated) or 'all' whose LibreTranslate translations are cached",
    )
    g.add_argument(
        "--trust-forwarded-for",
        action="store_true",
        help="take the client address from X-Forwarded-For sent by --forwarded-allow-ips",
    )
    g.add_argument(
        "--forwarded-allow-ips",
        default="127.0.0.1",
        help="proxies (addresses or CIDR, comma-separated) whose X-Forwarded-For is believed",
    )
    g.add_argument("--cors-origins", default="*", help="origins (comma-separated) browsers may call from")
    g.add_argument("--metrics-auth-token", help="/metrics wants 'Authorization: Bearer TOKEN'")
    g.add_argument(
        "--admin-token", help="turns on POST /admin/reload, which wants 'Authorization: Bearer TOKEN'"
    )
    g.add_argument("--url-prefix", default="", help="serve every route under this path, e.g. /translate-api")
    g.add_argument("--disable-web-ui", action="store_true", help="no translation page at /")
    g.add_argument("--shutdown-delay", type=float, default=0.0,
                   help="seconds between SIGTERM (readiness 503) and closing the listener")  # fmt: skip


def add_libretranslate_options(p: argparse.ArgumentParser) -> None:
    """LibreTranslate's ``/suggest`` and ``/translate_file`` (``serve.libretranslate.suggest``, ``files_routes``)."""
    g = p.add_argument_group("suggestions and files")
    g.add_argument("--suggestions", action="store_true", help="take better translations at POST /suggest")
    g.add_argument(
        "--suggestions-db-path",
        default="db/suggestions.db",
        help="SQLite file of the suggestions when there is no --shared-storage (seq2seq-suggestions reads it)",
    )
    g.add_argument(
        "--disable-files-translation", action="store_true", help="no POST /translate_file and no downloads"
    )
    g.add_argument(
        "--files-dir",
        help="folder of translated files awaiting download, without --shared-storage "
        "(default: seq2seq-files in the system's temporary folder)",
    )
    g.add_argument(
        "--files-ttl", type=float, default=1800.0, help="seconds a translated file can be downloaded"
    )
    g.add_argument(
        "--files-max-bytes", type=int, default=10 * 2**20, help="largest upload to /translate_file"
    )
    g.add_argument(
        "--files-max-chars",
        type=int,
        default=100_000,
        help="most characters of text one file may hold (each paragraph also within --char-limit)",
    )


def check_access_options(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for name in ("req_limit", "hourly_req_limit", "daily_req_limit", "req_flood_threshold"):
        if getattr(args, name) < -1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, or -1 or 0 for none")
    if args.shared_storage:
        from serve.store.connection import check_url

        try:
            check_url(args.shared_storage)
        except ValueError as e:
            p.error(str(e))
    if args.url_prefix and (not args.url_prefix.startswith("/") or args.url_prefix.endswith("/")):
        p.error("--url-prefix must start with / and not end with one, e.g. /translate-api")
    if args.api_keys_required and not args.api_keys:
        args.api_keys = True  # a required key needs the key store
    if args.shutdown_delay < 0:
        p.error("--shutdown-delay must be >= 0")
    import ipaddress

    try:
        [
            ipaddress.ip_network(a.strip(), strict=False)
            for a in args.forwarded_allow_ips.split(",")
            if a.strip()
        ]
    except ValueError as e:
        p.error(f"--forwarded-allow-ips: {e}")
