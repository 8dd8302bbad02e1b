"""Prometheus (prometheus_client): the metric definitions and this process's instance of them
(``metrics``), prometheus_client's multi-process mode, the collectors that read the store and the
queue at scrape time (``collectors``), the observer the worker parts count their events with
(``observer``) and what a scrape serves (``exposition``). SPEC §4, ADR 0009.

Nothing here imports the application: the reports the observer and the collectors read are
described by the shapes they read (``observer.FinishedJob``, ``collectors.StoreLevels``...), and
mypy checks the application's classes against those shapes where ``entrypoints.metrics`` wires
them (ADR 0002).
"""
