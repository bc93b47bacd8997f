-- gridhub analysts' kit: the county centre's standing questions, in SQL.
--
-- Runs on ClickHouse 18.16 and current ClickHouse alike, against the
-- database of the hub (`gridhub` by default):
--
--   clickhouse-client --port 19000 --database gridhub --multiquery < deploy/analyst.sql
--
-- or, as tables and an HTML page with charts:  gridhub report [--html report.html]
--
-- Times are Beijing time ("this week" starts on Monday 00:00 +08:00).  Every
-- query reads the facts through FINAL or the views of schemas/migrations, so
-- loading the same Kafka data twice changes no answer.  `now()` is the only
-- clock: `gridhub report --as-of` replaces it to answer for another moment.
-- Each query is preceded by `-- name:` and `-- title:` lines (gridhub report reads them).

-- name: top_categories_week
-- title: 本周各乡镇（街道）前三类事件 (top categories this week, by township)
SELECT street_code, category, count() AS reports, uniqExact(case_id) AS cases
FROM reports FINAL
WHERE kind != 'recover' AND street_code != ''
  AND toMonday(reported_at) = toMonday(toTimeZone(now(), 'Asia/Shanghai'))
GROUP BY street_code, category
ORDER BY street_code, reports DESC, category
LIMIT 3 BY street_code;

-- name: overdue_open_by_agency
-- title: 超期未办结案件，按部门 (open overdue cases by agency: a 签收 or 办结 clock ran out)
SELECT agency,
       count() AS open_overdue,
       countIf(resolve_overdue) AS resolve_clock,
       countIf(sign_overdue AND NOT resolve_overdue) AS sign_clock_only,
       min(dispatched_time) AS oldest_dispatch
FROM overdue_open
GROUP BY agency
ORDER BY open_overdue DESC, agency;

-- name: sign_time_month
-- title: 本月各部门签收与办结用时（小时，中位数与P90）
SELECT agency, dispatched, signed, sign_hours_p50, sign_hours_p90, resolved,
       resolve_hours_p50, resolve_hours_p90, on_time_rate, overdue
FROM agency_monthly
WHERE month = toStartOfMonth(toTimeZone(now(), 'Asia/Shanghai'))
ORDER BY agency;

-- name: dedupe_by_source
-- title: 各渠道合并情况（每案件上报数；与他件同案的上报占比）
SELECT source, reports, linked_cases, reports_per_case, shared_reports, shared_share
FROM dedupe_by_source
ORDER BY source;

-- name: satisfaction_trend
-- title: 近8周回访满意度（满意率 = (满意 + 基本满意) / 回访数）
SELECT week,
       sum(reviews) AS review_count,
       sum(satisfied) AS satisfied_count,
       sum(basically_satisfied) AS basically_count,
       sum(dissatisfied) AS dissatisfied_count,
       round((satisfied_count + basically_count) / review_count, 4) AS satisfaction_rate
FROM satisfaction_weekly
WHERE week > toMonday(toTimeZone(now(), 'Asia/Shanghai')) - 56
  AND week <= toMonday(toTimeZone(now(), 'Asia/Shanghai'))
GROUP BY week
ORDER BY week;

-- name: township_index
-- title: 本月乡镇（街道）晾晒指数（0-100，含重复发生率；公式见 docs/clickhouse.md）
SELECT street_code, county_code, cases, closure_rate, on_time_rate, satisfaction_rate, recurrence_rate,
       township_index
FROM township_index_monthly
WHERE month = toStartOfMonth(toTimeZone(now(), 'Asia/Shanghai'))
ORDER BY township_index DESC, street_code;

-- name: reports_last_24h
-- title: 近24小时每小时上报数
SELECT hour, sum(reports) AS report_count
FROM reports_hourly
WHERE hour > toStartOfHour(toTimeZone(now(), 'Asia/Shanghai')) - 86400
  AND hour <= toStartOfHour(toTimeZone(now(), 'Asia/Shanghai'))
GROUP BY hour
ORDER BY hour;
