-- Staffing per store and day beside the day's sales: how many people worked, their hours, and the
-- completed orders and revenue per staff hour, for the area managers' shift planning.
WITH staffing AS (
    SELECT work_date, store_code, count(*) AS staff, sum(hours) AS staff_hours
    FROM warehouse.shifts
    GROUP BY ALL
),
sales AS (
    SELECT order_date, store_id, count(DISTINCT order_id) AS orders, sum(amount) AS revenue
    FROM warehouse.order_lines
    WHERE order_status = 'completed'
    GROUP BY ALL
)
SELECT
    f.work_date,
    s.store_id,
    s.store_code,
    s.store_name,
    CAST(f.staff AS BIGINT) AS staff,
    CAST(f.staff_hours AS DOUBLE) AS staff_hours,
    CAST(coalesce(o.orders, 0) AS BIGINT) AS orders,
    CAST(coalesce(o.revenue, 0) AS BIGINT) AS revenue,
    round(coalesce(o.orders, 0) / nullif(f.staff_hours, 0), 2) AS orders_per_staff_hour,
    round(coalesce(o.revenue, 0) / nullif(f.staff_hours, 0), 0) AS revenue_per_staff_hour
FROM staffing AS f
JOIN warehouse.stores AS s ON s.store_code = f.store_code
LEFT JOIN sales AS o ON o.store_id = s.store_id AND o.order_date = f.work_date
ORDER BY f.work_date, s.store_id
