-- Issue 19: the township index gains its fourth part, recurrence, and the views
-- the analysts' report needs per case (resolution time, recurrence).
-- Same portability rules as 0002_views.sql (18.16 and 26.x): one JOIN per
-- SELECT, aliased joined subqueries, no alias equal to a column name.

-- When each case was first resolved (办结), from the lifecycle log.
CREATE VIEW IF NOT EXISTS {db}.case_resolutions AS
SELECT case_id, min(at) AS resolved_time
FROM {db}.case_events FINAL
WHERE event = 'resolved'
GROUP BY case_id;

-- 重复发生 (recurrence): a case recurs when an earlier case of the same township
-- and category was resolved in the 30 days before the new one was first seen:
-- the problem came back after it was declared solved.  30 days: the window
-- county centres use for 重复件 in their monthly 晾晒.
CREATE VIEW IF NOT EXISTS {db}.case_recurrence AS
SELECT case_id, max(prev_resolved_time < first_seen
                    AND toUnixTimestamp(prev_resolved_time) >= toUnixTimestamp(first_seen) - 30 * 86400) AS recurs
FROM
(
    SELECT case_id, street_code, category, first_seen
    FROM {db}.cases FINAL
    WHERE dispatchable = 1 AND street_code != ''
) AS facts
ALL LEFT JOIN
(
    SELECT street_code, category, resolved_time AS prev_resolved_time
    FROM
    (
        SELECT case_id, street_code, category FROM {db}.cases FINAL WHERE dispatchable = 1
    ) AS resolved_cases
    ANY INNER JOIN {db}.case_resolutions USING (case_id)
) AS joined USING (street_code, category)
GROUP BY case_id;

-- One row per dispatchable case with every part of the township index: the
-- base the monthly view below and `gridhub report` (any period) aggregate.
CREATE VIEW IF NOT EXISTS {db}.case_index_parts AS
SELECT
    case_id, county_code, street_code, category, first_seen, lng, lat, status,
    is_closed, ev_resolved, ev_resolve_overdue, ev_overdue, ev_satisfaction,
    recurs
FROM
(
    SELECT case_id, county_code, street_code, category, first_seen, status, is_closed,
           ev_resolved, ev_resolve_overdue, ev_overdue, ev_satisfaction
    FROM {db}.case_facts
    WHERE dispatchable = 1 AND street_code != ''
) AS facts
ANY LEFT JOIN
(
    SELECT case_id, recurs, lng, lat FROM {db}.case_recurrence
    ANY LEFT JOIN (SELECT case_id, lng, lat FROM {db}.cases FINAL) AS positions USING (case_id)
) AS joined USING (case_id);

-- 晾晒指数 with recurrence (docs/clickhouse.md):
--   100 × (0.3·C + 0.25·T + 0.25·S + 0.2·(1 − R)) / (0.3 + 0.25·[resolved > 0] + 0.25·[reviews > 0] + 0.2)
-- A part without data drops out and the others are re-weighted, as before.
DROP TABLE IF EXISTS {db}.township_index_monthly;

CREATE VIEW {db}.township_index_monthly AS
SELECT
    month, county_code, street_code,
    cases, closed, closure_rate,
    resolved, on_time, on_time_rate,
    reviews, satisfied, satisfaction_rate,
    recurring, recurrence_rate,
    round(100 * (0.3 * closure_rate + 0.25 * ifNull(on_time_rate, 0) + 0.25 * ifNull(satisfaction_rate, 0)
                 + 0.2 * (1 - recurrence_rate))
          / (0.3 + 0.25 * (resolved > 0) + 0.25 * (reviews > 0) + 0.2), 1) AS township_index
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
        if(reviews = 0, NULL, round(satisfied / reviews, 4)) AS satisfaction_rate,
        countIf(recurs = 1) AS recurring,
        round(recurring / cases, 4) AS recurrence_rate
    FROM {db}.case_index_parts
    GROUP BY month, county_code, street_code
);
