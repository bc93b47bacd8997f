"""Shared helpers of the tests (the fixtures that start servers are in tests/conftest.py only).

* :mod:`helpers.kafka`: the one topic reader (``TopicReader``, ``read_topic``) and ``produce``;
* :mod:`helpers.http`: the one local HTTP receiver (an agency's webhook endpoint) and sample dispatches;
* :mod:`helpers.ports`: free ports for servers a test starts itself;
* :mod:`helpers.cli`: ``gridhub`` commands in-process;
* :mod:`helpers.fusion`, :mod:`helpers.routing`, :mod:`helpers.ingest_corpus`, :mod:`helpers.fuzz`:
  inputs of the fusion, routing, ingest and fuzz tests.
"""
