"""Errors the use cases raise on purpose."""


class ContentionError(RuntimeError):
    """A race kept being lost past the retry budget; transient, so the job is retried."""


class EarlierMessagesWaiting(ContentionError):
    """A seller message would close a stale live session while messages received inside that
    session's window still wait to be processed (ADR 0012); transient: the job is retried once
    they are, and judged again."""
