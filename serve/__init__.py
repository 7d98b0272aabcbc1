"""The translation service: ``seq2seq-serve --checkpoint model.ckpt`` (LitServe).

A request passes through the modules in one direction:

- ``serve.__main__``: the command line, turned into a ``ServerConfig``; checks the checkpoints.
- ``serve.app``: builds the server from the config: the LitServe server, middlewares and routes.
- ``serve.ops``: what every request passes first: ``metrics`` (Prometheus), ``logs`` (JSON
  lines), ``ratelimit`` (``--req-limit``).
- ``serve.libretranslate``: LibreTranslate's API on the same workers: ``fields`` (its bodies,
  and which ``POST /translate`` is its), ``routes``, ``schema`` (its OpenAPI), ``detect``,
  ``languages``, ``markup`` (``format: html``).
- ``serve.native``: the native ``POST /translate``: ``body`` (the one depth-safe JSON reader),
  ``schemas`` (request and response models, with the limits), ``errors`` (JSON errors).
- ``serve.openapi``: the OpenAPI document of both APIs.
- ``serve.worker``: the inference side. ``api`` (the ``LitAPI``), ``loop`` (continuous batching
  and batches), ``streams``, ``jobs`` (torch-free: what a request becomes, and its pivot legs),
  ``catalog`` (models and language pairs), ``checkpoint`` (start-up checks), ``supervisor``
  (restarts dead workers and fails their requests), ``affinity`` (``--pin-cpus``).
- ``serve.web``: the translation page at ``/`` and offline ``/docs``.

Only ``serve.worker.loop`` and ``serve.worker.supervisor`` use LitServe beyond its top-level names
and ``litserve.loops``; each says which LitServe defect it works around, and
``tests/test_litserve_seams.py`` pins what they rely on.
"""
