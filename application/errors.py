"""Errors the use cases raise on purpose."""


class ContentionError(RuntimeError):
    """A race kept being lost past the retry budget; transient, so the job is retried."""
