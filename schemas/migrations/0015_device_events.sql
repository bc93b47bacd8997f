-- Issue 15: device events (fault, low battery, self-test, offline, back online) as facts, and the
-- devices offline now per township.  Numbered after the issue, not 0003: other issues add migrations
-- in parallel and a version may be used once only.
--
-- One row per DeviceEvent (topic device-events), idempotent on event_id: an offline episode has one
-- id (streams/ingest/agents.py), so a redelivered or replayed event replaces its row.
CREATE TABLE IF NOT EXISTS {db}.device_events
(
    event_id     String,
    device_id    String,
    device_type  {lcstring},
    event        {lcstring},
    at           DateTime('Asia/Shanghai'),
    county_code  {lcstring},
    street_code  {lcstring},
    address      String,
    owner        String,
    detail       String,
    loaded_at    DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (device_id, event_id);

-- A device is offline now when its latest event is 'offline': any later event (back online, a
-- fault, a low battery, a self-test) proves it is talking again.  Per township.
CREATE VIEW IF NOT EXISTS {db}.devices_offline_now AS
SELECT
    street_code,
    count() AS devices_offline,
    groupArray(device_id) AS device_ids,
    min(offline_since) AS oldest_offline_since
FROM
(
    SELECT
        device_id,
        argMax(event, at) AS last_event,
        argMax(street_code, at) AS street_code,
        max(at) AS offline_since
    FROM {db}.device_events FINAL
    GROUP BY device_id
)
WHERE last_event = 'offline'
GROUP BY street_code;
