"""The interfaces the core needs, as typing.Protocol (ADR 0002). Ports import only ``domain``."""
