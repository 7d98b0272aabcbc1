"""Assembling the server: the LitServe API and server, the middlewares in their order, the routes.

Everything a piece needs (limits, catalog, key, paths) is passed to it here; nothing is set in a
module before LitServe forks its HTTP processes. The request path, outermost first: LitServe's
body-size limit and gzip, CORS, ``PrefixMiddleware`` (``--url-prefix``), ``MetricsMiddleware``
(counts and logs every answer, 4xx included), ``ProbeMiddleware`` (``/livez``, ``/readyz``, the
drain on SIGTERM), ``BodySizes`` (uploads to ``--files-max-bytes``, other bodies to
``max_payload``), ``LibreTranslateDispatch`` (a ``q`` body at ``/translate`` is LibreTranslate's;
its look is the request's one JSON parse), ``Bounds`` (the limits and catalog the request models
validate against), ``AccessMiddleware`` (API keys, rate limits, bans: ``serve.ops.access``), then
the route: LitServe's native ``POST /translate``, which queues the request for a worker
(``serve.worker``), or LibreTranslate's (``serve.libretranslate``: ``/translate``, ``/detect``,
``/suggest``, ``/translate_file``, ``/download_file``, ``/frontend/settings``, ``/spec``).
"""

from __future__ import annotations

import argparse
import json
import os

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from serve import openapi
from serve.catalog import Catalog
from serve.files import SUPPORTED_EXTENSIONS
from serve.files import Limits as FileLimits
from serve.libretranslate.detect import Detector
from serve.libretranslate.fields import PATHS as LIBRETRANSLATE_PATHS
from serve.libretranslate.fields import LibreTranslateDispatch
from serve.libretranslate.files_routes import (
    FORM_OVERHEAD,
    BodySizes,
    FileSettings,
    file_store,
    install_files,
)
from serve.libretranslate.frontend import install_frontend
from serve.libretranslate.languages import install_languages_route
from serve.libretranslate.routes import install_libretranslate
from serve.libretranslate.suggest import install_suggest, suggestion_store
from serve.native.body import JSONRoute
from serve.native.errors import install_error_handlers
from serve.native.schemas import Bounds, Limits
from serve.ops import metrics
from serve.ops.access import Access, build_access
from serve.ops.probes import Drain, ProbeMiddleware
from serve.ops.proxy import PrefixMiddleware, cors_middleware
from serve.web import install_web
from serve.worker.affinity import CpuPlan
from serve.worker.api import TranslatorAPI
from serve.worker.reload import Reloader, ServedModels, install_admin_route
from serve.worker.supervisor import SupervisedServer


class TranslationServer(SupervisedServer):
    """``SupervisedServer`` whose routes, LitServe's own included, read JSON with ``serve.native.body``."""

    def register_endpoints(self) -> None:
        self.app.router.route_class = JSONRoute  # before LitServe adds its routes
        super().register_endpoints()


def install_info(app: FastAPI, access: Access, served: ServedModels) -> None:
    """LitServe's ``/info`` with the models as they are now (a reload changes them), the last reload,
    and where keys and counters live and whether they answer."""
    routes = app.router.routes
    litserve = routes.pop(next(i for i, r in enumerate(routes) if getattr(r, "path", None) == "/info"))

    async def info(request: Request) -> JSONResponse:
        answer = await litserve.endpoint(request)
        content = json.loads(answer.body)
        state = served.read()
        content["model"] = content.get("model", {}) | {"models": state["models"], "reload": state["reload"]}
        return JSONResponse(content | {"store": access.status()}, status_code=answer.status_code)

    app.add_api_route("/info", info, methods=["GET"], dependencies=litserve.dependencies)


def max_payload(limits: Limits) -> int:
    """Bytes a body may have: every character a 6-byte JSON escape, plus room for the options."""
    return limits.max_texts * (6 * limits.max_chars + 8) + 65536


def build_server(
    args: argparse.Namespace, catalog: Catalog, device: str, cpus: CpuPlan | None
) -> TranslationServer:
    """The server for the parsed command line (``serve.__main__``), not yet running."""
    limits = Limits(max_chars=args.max_chars, max_texts=args.max_texts,
                    max_beam=args.max_beam, max_length=args.max_length)  # fmt: skip
    served = ServedModels([meta | {"quantize": args.quantize} for meta in catalog.models.values()])
    metadata = {"pairs": catalog.describe_pairs(), "limits": vars(limits)}  # and the models, live
    api = TranslatorAPI(
        catalog, quantize=args.quantize, workers=args.workers, threads=args.threads or None,
        api_key=args.api_key, max_length=args.max_length,
        max_batch_size=args.max_batch_size, batch_timeout=args.batch_timeout, continuous=args.continuous,
        cpus=cpus,
    )  # fmt: skip
    # LitServe adds each middleware outside the ones before it: innermost first
    access, drain = build_access(args), Drain()  # before LitServe forks its HTTP processes: shared
    gate = access.middleware(frozenset({api.api_path}), LIBRETRANSLATE_PATHS)
    middlewares: list = [gate] if gate else []
    middlewares.append((Bounds, {"limits": limits, "catalog": catalog}))
    file_limits = FileLimits(max_bytes=args.files_max_bytes, max_chars=args.files_max_chars)
    max_upload = args.files_max_bytes + FORM_OVERHEAD if not args.disable_files_translation else 0
    middlewares.append((LibreTranslateDispatch, {"max_body": max_payload(limits)}))
    middlewares.append((BodySizes, {"max_body": max_payload(limits), "max_upload": max_upload}))
    middlewares.append((ProbeMiddleware, {"drain": drain}))
    middlewares.append((metrics.MetricsMiddleware, {"access_log": args.log_format == "json"}))
    if args.url_prefix:
        middlewares.append((PrefixMiddleware, {"prefix": args.url_prefix}))
    middlewares.append(cors_middleware(args.cors_origins))
    server = TranslationServer(
        api,
        accelerator=device,  # "cpu" or "cuda", as the checkpoint check resolved --device
        workers_per_device=args.workers,
        timeout=args.timeout,
        model_metadata=metadata,
        max_payload_size=max(max_payload(limits), max_upload),  # BodySizes holds each route to its own
        middlewares=middlewares,
    )
    server.drain = drain  # serve.__main__ starts it on SIGTERM
    paths = [meta["path"] for meta in catalog.models.values()]
    server.reloader = Reloader(server, paths, device, args.quantize, served)  # serve.__main__: SIGHUP
    install_error_handlers(server.app)
    install_info(server.app, access, served)
    if args.admin_token:
        install_admin_route(server.app, args.admin_token, served, os.getpid())
    install_languages_route(server.app, catalog)
    detector = Detector(catalog.source_models())
    lt = install_libretranslate(server.app, catalog, detector, args.api_key, limits, access.cache)
    # the stores open in each HTTP process on first use, after LitServe forks them
    suggestions = (
        suggestion_store(args.suggestions_db_path, args.shared_storage) if args.suggestions else None
    )
    install_suggest(server.app, lt, args.suggestions, suggestions)
    files = FileSettings(not args.disable_files_translation, file_limits,
                         file_store(args.shared_storage, args.files_dir, args.files_ttl), args.url_prefix)  # fmt: skip
    install_files(server.app, lt, files)
    install_frontend(
        server.app, catalog, args.max_chars, key_required=bool(args.api_key) or args.api_keys_required,
        api_keys=args.api_keys or bool(args.api_key), suggestions=args.suggestions,
        files_translation=files.enabled, file_formats=SUPPORTED_EXTENSIONS,
    )  # fmt: skip
    install_web(server.app, page=not args.disable_web_ui)  # the page at / and offline /docs
    metrics.add_metrics_route(server.app, api.authorize, args.metrics_auth_token, [served])
    openapi.document(
        server.app,
        [api.api_path],
        api.authorize if args.api_key else None,
        rate_limited=access.limiter is not None,
    )
    return server
