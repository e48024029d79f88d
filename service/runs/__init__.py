"""Runs: the PostgreSQL run queue and its workers, stream events, wake-ups, and graph execution.

- :mod:`service.runs.execution`: one run of a graph (request body, config, stream, outcome);
- :mod:`service.runs.queue`: the ``runs`` rows: submit, claim with leases, finish, cancel;
- :mod:`service.runs.worker`: claiming and executing runs, heartbeats, cancellation;
- :mod:`service.runs.events`: stream events in memory and in ``run_events``, replay;
- :mod:`service.runs.notify`: LISTEN/NOTIFY wake-ups with polling as the floor;
- :mod:`service.runs.manager`: what the API asks of runs on PostgreSQL;
- :mod:`service.runs.local`: in-process runs of ``CHECKPOINTER=memory``.
"""
