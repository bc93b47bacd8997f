"""The hub's stream processors (Faust), split by domain: ingest, fusion, routing."""
