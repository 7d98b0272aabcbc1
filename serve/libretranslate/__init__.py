"""LibreTranslate's API on the same workers: ``/translate`` (a ``q`` body), ``/detect``, ``/languages``."""
