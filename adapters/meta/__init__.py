"""Meta's WhatsApp Cloud API: the second real provider, on ``httpx`` against the Graph API
(ADR 0019)."""
