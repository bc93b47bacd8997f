-- Fact tables: one row per Kafka fact, idempotent on the fact's own id.
--
-- Rules these tables follow (and every later migration must keep):
-- * ReplacingMergeTree: a redelivered or replayed fact collapses onto the
--   first copy at merge time; readers use FINAL (or argMax) so duplicates that
--   are not merged yet are never counted.  The dedupe key is the ORDER BY key,
--   so it only contains columns that never change for one id.
-- * A table is PARTITIONed only by a time that never changes for one id
--   (ReplacingMergeTree only collapses rows inside one partition).
-- * No Nullable column in a key (18.16 forbids it); unknown text is ''.
-- * {db} is the database, {lcstring} is LowCardinality(String) on servers that
--   have it without a setting (>= 19.9) and String on 18.16: see
--   connectors/clickhouse/migrate.py.
-- * Times are DateTime('Asia/Shanghai'): analysts count days, weeks and months
--   in Beijing time.  18.16 has no DateTime64, so times are whole seconds.

CREATE TABLE IF NOT EXISTS {db}.reports
(
    report_id            String,
    source               {lcstring},
    source_ref           String,
    case_id              String,
    kind                 {lcstring},
    county_code          {lcstring},
    street_code          {lcstring},
    village_code         String,
    grid_code            String,
    category             {lcstring},
    source_category_code String,
    source_category_name String,
    title                String,
    address              String,
    lng                  Nullable(Float64),
    lat                  Nullable(Float64),
    occurred_at          Nullable(DateTime('Asia/Shanghai')),
    reported_at          DateTime('Asia/Shanghai'),
    received_at          DateTime('Asia/Shanghai'),
    severity             UInt8,
    status               String,
    dispatchable         UInt8,
    satisfaction         String,
    channel              String,
    appeal_type          String,
    event_source         String,
    platform             String,
    deadline             Nullable(DateTime('Asia/Shanghai')),
    device_id            String,
    device_type          String,
    value                Nullable(Float64),
    threshold            Nullable(Float64),
    unit                 String,
    version              UInt64,
    loaded_at            DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(reported_at)
ORDER BY report_id;

-- first_seen can move earlier when an older report joins the case, so cases
-- are not partitioned by it (see the rules above).
CREATE TABLE IF NOT EXISTS {db}.cases
(
    case_id      String,
    county_code  {lcstring},
    street_code  {lcstring},
    category     {lcstring},
    title        String,
    address      String,
    lng          Nullable(Float64),
    lat          Nullable(Float64),
    severity     UInt8,
    sources      Array(String),
    report_ids   Array(String),
    report_count UInt32,
    first_seen   DateTime('Asia/Shanghai'),
    last_seen    DateTime('Asia/Shanghai'),
    status       {lcstring},
    dispatchable UInt8,
    device_ids   Array(String),
    version      UInt64,
    updated_at   DateTime('Asia/Shanghai'),
    loaded_at    DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree(version)
ORDER BY case_id;

-- role, clock, satisfaction and deadline are copied out of the JSON detail by
-- the sink, so queries need no JSON functions (18.16 only has visitParam*).
CREATE TABLE IF NOT EXISTS {db}.case_events
(
    event_id     String,
    case_id      String,
    county_code  {lcstring},
    event        {lcstring},
    at           DateTime('Asia/Shanghai'),
    agency       {lcstring},
    dispatch_id  String,
    report_id    String,
    state        {lcstring},
    detail       String,
    role         {lcstring},
    clock        {lcstring},
    satisfaction {lcstring},
    deadline     Nullable(DateTime('Asia/Shanghai')),
    loaded_at    DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (case_id, event_id);

-- version: 0 for action 'dispatch', 1 for 'withdraw', so a withdrawal of the
-- same dispatch_id wins.  Not partitioned: a withdrawal may carry another time.
CREATE TABLE IF NOT EXISTS {db}.dispatches
(
    dispatch_id          String,
    case_id              String,
    agency               {lcstring},
    county_code          {lcstring},
    street_code          {lcstring},
    role                 {lcstring},
    reason               String,
    category             {lcstring},
    severity             UInt8,
    report_count         UInt32,
    sources              Array(String),
    dispatched_at        DateTime('Asia/Shanghai'),
    sign_deadline        Nullable(DateTime('Asia/Shanghai')),
    deadline             Nullable(DateTime('Asia/Shanghai')),
    escalation_level     UInt8,
    previous_dispatch_id String,
    action               {lcstring},
    version              UInt8,
    loaded_at            DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (case_id, dispatch_id);

-- One row per record of the dlq topic, identified by its place in that topic.
CREATE TABLE IF NOT EXISTS {db}.dead_letters
(
    dlq_partition    UInt32,
    dlq_offset       UInt64,
    stage            {lcstring},
    reason           String,
    source_topic     String,
    source_partition Nullable(Int32),
    source_offset    Nullable(Int64),
    key              String,
    value            String,
    extra            String,
    at               DateTime('Asia/Shanghai'),
    loaded_at        DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (dlq_partition, dlq_offset);
