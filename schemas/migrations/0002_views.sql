-- Aggregates for the 141 dashboards, as plain views over the fact tables.
--
-- Why views and not materialized views: a materialized view sees each
-- inserted block, not the table, so it counts a redelivered fact again and
-- keeps a report in the category it had before it was recategorised.  Every
-- view here reads the facts through FINAL (the latest version of each id), so
-- a duplicate fact cannot double-count and an update replaces what it
-- updates.  Measured on 18.16 and 26.x (tests/gridhub/clickhouse).
--
-- Portability rules (18.16 and 26.x): one JOIN per SELECT, always
-- ANY LEFT JOIN ... USING with aliased subqueries; no alias equal to a column name; no window
-- functions; no JSON functions; quantileExact (deterministic) for medians.

-- The contract mapping of every source record to its case.
CREATE VIEW IF NOT EXISTS {db}.report_case_map AS
SELECT source, source_ref, report_id, case_id
FROM {db}.reports FINAL;

-- Reports by hour / county / township / category / source.  `cases` is the
-- number of distinct cases those reports belong to (not additive across rows).
CREATE VIEW IF NOT EXISTS {db}.reports_hourly AS
SELECT
    toStartOfHour(reported_at) AS hour,
    county_code,
    street_code,
    category,
    source,
    count() AS reports,
    uniqExact(case_id) AS cases
FROM {db}.reports FINAL
WHERE kind != 'recover'
GROUP BY hour, county_code, street_code, category, source;

-- Cases by the hour they were first seen.
CREATE VIEW IF NOT EXISTS {db}.cases_hourly AS
SELECT
    toStartOfHour(first_seen) AS hour,
    county_code,
    street_code,
    category,
    count() AS cases,
    sum(report_count) AS reports,
    countIf(length(sources) > 1) AS multi_source_cases,
    countIf(status IN ('resolved', 'reviewed', 'closed')) AS closed_cases
FROM {db}.cases FINAL
GROUP BY hour, county_code, street_code, category;

-- One row per (case, agency) that was ever dispatched to: when it was
-- dispatched, signed (签收) and resolved (办结), and whether a clock ran out.
-- role comes from the dispatched event's detail, else from the Dispatch record.
CREATE VIEW IF NOT EXISTS {db}.dispatch_facts AS
SELECT
    case_id,
    agency,
    if(event_role != '', event_role, record_role) AS dispatch_role,
    dispatched_time,
    is_signed,
    signed_time,
    is_resolved,
    resolved_time,
    sign_overdue,
    resolve_overdue,
    handed_back,
    if(is_signed, (toUnixTimestamp(signed_time) - toUnixTimestamp(dispatched_time)) / 3600, NULL) AS sign_hours,
    if(is_resolved, (toUnixTimestamp(resolved_time) - toUnixTimestamp(dispatched_time)) / 3600, NULL) AS resolve_hours
FROM
(
    SELECT
        case_id,
        agency,
        argMinIf(role, at, event = 'dispatched') AS event_role,
        minIf(at, event = 'dispatched') AS dispatched_time,
        countIf(event = 'signed') > 0 AS is_signed,
        minIf(at, event = 'signed') AS signed_time,
        countIf(event = 'resolved') > 0 AS is_resolved,
        minIf(at, event = 'resolved') AS resolved_time,
        countIf(event = 'overdue' AND clock = 'sign') > 0 AS sign_overdue,
        countIf(event = 'overdue' AND clock != 'sign') > 0 AS resolve_overdue,
        countIf(event IN ('returned', 'withdrawn')) > 0 AS handed_back
    FROM {db}.case_events FINAL
    WHERE agency != ''
    GROUP BY case_id, agency
    HAVING countIf(event = 'dispatched') > 0
) AS facts
ANY LEFT JOIN
(
    SELECT case_id, agency, any(role) AS record_role
    FROM {db}.dispatches FINAL
    GROUP BY case_id, agency
) AS joined USING (case_id, agency);

-- Per agency and month of dispatch: volumes, time to 签收 / 办结 in hours,
-- on-time rate of lead dispatches, overdue count.
CREATE VIEW IF NOT EXISTS {db}.agency_monthly AS
SELECT
    toStartOfMonth(dispatched_time) AS month,
    agency,
    count() AS dispatched,
    countIf(is_signed) AS signed,
    countIf(is_resolved) AS resolved,
    round(quantileExact(0.5)(sign_hours), 2) AS sign_hours_p50,
    round(quantileExact(0.9)(sign_hours), 2) AS sign_hours_p90,
    round(quantileExact(0.5)(resolve_hours), 2) AS resolve_hours_p50,
    round(quantileExact(0.9)(resolve_hours), 2) AS resolve_hours_p90,
    countIf(is_resolved AND dispatch_role = 'lead') AS lead_resolved,
    countIf(is_resolved AND dispatch_role = 'lead' AND NOT resolve_overdue) AS lead_on_time,
    if(lead_resolved = 0, NULL, round(lead_on_time / lead_resolved, 4)) AS on_time_rate,
    countIf(sign_overdue OR resolve_overdue) AS overdue
FROM {db}.dispatch_facts
GROUP BY month, agency;

-- Dispatches whose clock ran out and that are still open.
CREATE VIEW IF NOT EXISTS {db}.overdue_open AS
SELECT case_id, agency, dispatch_role, dispatched_time, sign_overdue, resolve_overdue, case_status
FROM {db}.dispatch_facts
ANY LEFT JOIN
(
    SELECT case_id, status AS case_status FROM {db}.cases FINAL
) AS joined USING (case_id)
WHERE (sign_overdue OR resolve_overdue)
  AND NOT is_resolved
  AND NOT handed_back
  AND case_status NOT IN ('resolved', 'reviewed', 'closed');

-- One row per case: its latest state plus what its lifecycle log says.
CREATE VIEW IF NOT EXISTS {db}.case_facts AS
SELECT
    case_id, county_code, street_code, category, severity, report_count, sources,
    first_seen, status, dispatchable,
    status IN ('resolved', 'reviewed', 'closed') AS is_closed,
    ev_resolved, ev_resolve_overdue, ev_overdue, ev_satisfaction
FROM
(
    SELECT case_id, county_code, street_code, category, severity, report_count, sources,
           first_seen, status, dispatchable
    FROM {db}.cases FINAL
) AS facts
ANY LEFT JOIN
(
    SELECT
        case_id,
        countIf(event = 'resolved') > 0 AS ev_resolved,
        countIf(event = 'overdue' AND clock != 'sign') > 0 AS ev_resolve_overdue,
        countIf(event = 'overdue') > 0 AS ev_overdue,
        argMaxIf(satisfaction, at, event = 'reviewed') AS ev_satisfaction
    FROM {db}.case_events FINAL
    GROUP BY case_id
) AS joined USING (case_id);

-- Reports per case, by source: how much fusion merged.
CREATE VIEW IF NOT EXISTS {db}.dedupe_by_source AS
SELECT
    source,
    count() AS reports,
    uniqExact(case_id) AS linked_cases,
    round(reports / linked_cases, 3) AS reports_per_case,
    countIf(case_reports > 1) AS shared_reports,
    round(shared_reports / reports, 4) AS shared_share
FROM
(
    SELECT source, case_id FROM {db}.reports FINAL
    WHERE kind != 'recover' AND case_id != ''
) AS facts
ANY LEFT JOIN
(
    SELECT case_id, report_count AS case_reports FROM {db}.cases FINAL
) AS joined USING (case_id)
GROUP BY source;

-- 回访 satisfaction by week (Monday, Beijing time) and county.
CREATE VIEW IF NOT EXISTS {db}.satisfaction_weekly AS
SELECT
    toMonday(at) AS week,
    county_code,
    count() AS reviews,
    countIf(satisfaction = '满意') AS satisfied,
    countIf(satisfaction = '基本满意') AS basically_satisfied,
    countIf(satisfaction = '不满意') AS dissatisfied,
    round((satisfied + basically_satisfied) / reviews, 4) AS satisfaction_rate
FROM {db}.case_events FINAL
WHERE event = 'reviewed' AND satisfaction != ''
GROUP BY week, county_code;

-- 晾晒指数: the monthly township index (formula in docs/clickhouse.md).
-- Weights 0.4 / 0.3 / 0.3; a component with no data drops out and the
-- others are re-weighted, so a township is not punished for having no reviews.
CREATE VIEW IF NOT EXISTS {db}.township_index_monthly AS
SELECT
    month, county_code, street_code,
    cases, closed, closure_rate,
    resolved, on_time, on_time_rate,
    reviews, satisfied, satisfaction_rate,
    round(100 * (0.4 * closure_rate + 0.3 * ifNull(on_time_rate, 0) + 0.3 * ifNull(satisfaction_rate, 0))
          / (0.4 + 0.3 * (resolved > 0) + 0.3 * (reviews > 0)), 1) AS township_index
FROM
(
    SELECT
        toStartOfMonth(first_seen) AS month,
        county_code,
        street_code,
        count() AS cases,
        countIf(is_closed) AS closed,
        round(closed / cases, 4) AS closure_rate,
        countIf(ev_resolved) AS resolved,
        countIf(ev_resolved AND NOT ev_resolve_overdue) AS on_time,
        if(resolved = 0, NULL, round(on_time / resolved, 4)) AS on_time_rate,
        countIf(ev_satisfaction != '') AS reviews,
        countIf(ev_satisfaction IN ('满意', '基本满意')) AS satisfied,
        if(reviews = 0, NULL, round(satisfied / reviews, 4)) AS satisfaction_rate
    FROM {db}.case_facts
    WHERE dispatchable = 1 AND street_code != ''
    GROUP BY month, county_code, street_code
);
