"""A WhatsApp provider that needs no account: latency and failures from a seed (ADR 0002)."""
