"""Shared storage: API keys, rate limits, suggestions and files, in this host's files or in Redis."""
