"""Adapters over the operating system: the wall clock, random ids, an in-process rate limiter."""
