-- Shifts as planned on the stores' sheets: hours worked per shift, break deducted (a late shift may end
-- after midnight).
WITH typed AS (
    SELECT
        CAST(work_date AS DATE) AS work_date,
        trim(store_code) AS store_code,
        trim(staff_id) AS staff_id,
        trim(role) AS role,
        CAST(start_time AS TIME) AS start_time,
        CAST(end_time AS TIME) AS end_time,
        CAST(coalesce(break_minutes, 0) AS INTEGER) AS break_minutes
    FROM lake.staff_shifts_latest
),
minutes AS (
    SELECT
        *,
        (hour(end_time) * 60 + minute(end_time)) - (hour(start_time) * 60 + minute(start_time)) AS span
    FROM typed
)
SELECT
    work_date,
    store_code,
    staff_id,
    role,
    start_time,
    end_time,
    break_minutes,
    round((span + CASE WHEN span <= 0 THEN 1440 ELSE 0 END - break_minutes) / 60.0, 2) AS hours
FROM minutes
