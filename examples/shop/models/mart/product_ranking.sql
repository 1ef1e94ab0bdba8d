WITH bounds AS (
    -- the last 30 days of data, so the ranking does not depend on when it is built
    SELECT max(order_date) - 29 AS window_start, max(order_date) AS window_end
    FROM warehouse.orders
),
sales AS (
    SELECT
        l.product_id,
        sum(l.quantity) AS units_sold,
        count(DISTINCT l.order_id) AS orders,
        sum(l.amount) AS revenue
    FROM warehouse.order_lines AS l
    CROSS JOIN bounds AS b
    WHERE l.order_status = 'completed'
      AND l.order_date BETWEEN b.window_start AND b.window_end
    GROUP BY l.product_id
),
assortment AS (
    SELECT
        p.product_id,
        p.sku,
        p.product_name,
        p.category,
        p.brand,
        p.unit_price,
        CAST(coalesce(s.units_sold, 0) AS BIGINT) AS units_sold,
        CAST(coalesce(s.orders, 0) AS BIGINT) AS orders,
        CAST(coalesce(s.revenue, 0) AS BIGINT) AS revenue
    FROM warehouse.products AS p
    LEFT JOIN sales AS s ON s.product_id = p.product_id
)
SELECT
    p.product_id,
    p.sku,
    p.product_name,
    p.category,
    p.brand,
    p.unit_price,
    p.units_sold,
    p.orders,
    p.revenue,
    round(p.revenue / nullif(sum(p.revenue) OVER (), 0), 6) AS revenue_share,
    rank() OVER (ORDER BY p.revenue DESC) AS overall_rank,
    rank() OVER (PARTITION BY p.category ORDER BY p.revenue DESC) AS category_rank,
    b.window_start,
    b.window_end
FROM assortment AS p
CROSS JOIN bounds AS b
ORDER BY overall_rank, p.product_id
