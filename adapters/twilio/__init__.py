"""Twilio: the production WhatsApp provider, on the official SDK (ADR 0006)."""
