"""Use cases: orchestrate the domain through ports, one function per use case (ADR 0002)."""
