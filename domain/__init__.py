"""livesell's pure core: attrs classes and functions, no I/O, no clock reads (ADR 0002)."""
