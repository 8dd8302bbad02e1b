"""RQ (Redis Queue) adapters: the inbound queue producers use and the worker that drains it."""
