"""The native JSON API: ``POST /translate``, its models, errors and body reader."""
