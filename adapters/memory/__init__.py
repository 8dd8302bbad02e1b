"""In-memory adapters of every port: production code for unit tests, the simulation and the demo.

They enforce what the database enforces (one active session per tenant, unique inbound ids,
tenant filtering, conditional writes) and are held to it by the contract tests (ADR 0005).
"""
