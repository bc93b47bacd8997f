"""ClickHouse sink: lands the hub's facts (reports, cases, case events, dispatches, dead letters)."""
