"""Operator tooling: topics as code, dead letters, archive, replay, case look-up.

Every command here is a thin click wrapper around a plain function (for
example :func:`gridhub.core.kafka_admin.ensure_topics`) so that tests, the demo and
other helpers call the same code the operators run.  The Kafka clients are
the blocking kafka-python ones: these are short-lived command-line
processes, not event-loop services.
"""
