-- Daily web interest per store: views of the store's page and stock checks for it, beside the store's
-- sales that day, so store managers see whether web interest turns into visits.
WITH views AS (
    SELECT
        view_date,
        store_code,
        count(*) FILTER (WHERE page_type = 'store') AS store_page_views,
        count(*) FILTER (WHERE page_type = 'stock_check') AS stock_checks,
        count(DISTINCT visitor) AS visitors
    FROM warehouse.page_views
    WHERE store_code IS NOT NULL
    GROUP BY ALL
),
sales AS (
    SELECT store_id, order_date, count(*) FILTER (WHERE status = 'completed') AS orders
    FROM warehouse.orders
    GROUP BY ALL
)
SELECT
    v.view_date,
    s.store_id,
    s.store_code,
    s.store_name,
    CAST(v.store_page_views AS BIGINT) AS store_page_views,
    CAST(v.stock_checks AS BIGINT) AS stock_checks,
    CAST(v.visitors AS BIGINT) AS visitors,
    CAST(coalesce(o.orders, 0) AS BIGINT) AS orders
FROM views AS v
JOIN warehouse.stores AS s ON s.store_code = v.store_code
LEFT JOIN sales AS o ON o.store_id = s.store_id AND o.order_date = v.view_date
ORDER BY v.view_date, s.store_id
