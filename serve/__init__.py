"""HTTP translation service: ``python -m serve --checkpoint model.ckpt`` (LitServe)."""

from serve.schemas import TranslateRequest, TranslateResponse

__all__ = ["TranslateRequest", "TranslateResponse"]
