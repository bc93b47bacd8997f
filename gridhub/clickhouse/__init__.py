"""ClickHouse: migrations, client helpers and the analysts' report.

The sink that loads Kafka facts lives in ``connectors/clickhouse``; the DDL in
``schemas/migrations``; the analysts' SQL in ``deploy/analyst.sql``.
"""
