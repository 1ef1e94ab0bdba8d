WITH calendar AS (
    SELECT CAST(unnest(generate_series(min(order_date), max(order_date), INTERVAL 1 DAY)) AS DATE) AS order_date
    FROM warehouse.orders
),
order_totals AS (
    SELECT order_id, sum(quantity) AS items, sum(amount) AS revenue
    FROM warehouse.order_lines
    WHERE order_status = 'completed'
    GROUP BY order_id
),
per_store_day AS (
    SELECT
        o.store_id,
        o.order_date,
        count(*) FILTER (WHERE o.status = 'completed') AS orders,
        count(DISTINCT o.customer_id) FILTER (WHERE o.status = 'completed') AS members,
        count(*) FILTER (WHERE o.status = 'cancelled') AS cancelled_orders,
        count(*) FILTER (WHERE o.status = 'returned') AS returned_orders,
        sum(t.items) AS items,
        sum(t.revenue) AS revenue
    FROM warehouse.orders AS o
    LEFT JOIN order_totals AS t ON t.order_id = o.order_id
    GROUP BY o.store_id, o.order_date
)
SELECT
    c.order_date,
    dayname(c.order_date) AS weekday,
    isodow(c.order_date) >= 6 AS is_weekend,
    s.store_id,
    s.store_code,
    s.store_name,
    s.prefecture,
    s.region,
    CAST(coalesce(p.orders, 0) AS BIGINT) AS orders,
    CAST(coalesce(p.items, 0) AS BIGINT) AS items,
    CAST(coalesce(p.revenue, 0) AS BIGINT) AS revenue,
    CASE WHEN p.orders > 0 THEN round(p.revenue / p.orders, 1) END AS avg_basket,
    CAST(coalesce(p.members, 0) AS BIGINT) AS members,
    CAST(coalesce(p.cancelled_orders, 0) AS BIGINT) AS cancelled_orders,
    CAST(coalesce(p.returned_orders, 0) AS BIGINT) AS returned_orders
FROM calendar AS c
CROSS JOIN warehouse.stores AS s
LEFT JOIN per_store_day AS p ON p.order_date = c.order_date AND p.store_id = s.store_id
ORDER BY c.order_date, s.store_id
