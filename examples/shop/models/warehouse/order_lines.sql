WITH latest AS (
    SELECT *
    FROM lake.pos_order_lines
    QUALIFY row_number() OVER (PARTITION BY order_id, line_no ORDER BY updated_at DESC) = 1
)
SELECT
    CAST(l.order_id AS BIGINT) AS order_id,
    CAST(l.line_no AS INTEGER) AS line_no,
    o.order_date,
    o.store_id,
    o.customer_id,
    o.status AS order_status,
    CAST(l.product_id AS INTEGER) AS product_id,
    CAST(l.quantity AS INTEGER) AS quantity,
    CAST(l.unit_price AS INTEGER) AS unit_price,
    CAST(l.discount AS INTEGER) AS discount,
    CAST(l.quantity AS BIGINT) * l.unit_price - l.discount AS amount
FROM latest AS l
JOIN warehouse.orders AS o ON o.order_id = l.order_id
-- only valid lines: a positive quantity and a product that exists in the product master
JOIN warehouse.products AS p ON p.product_id = l.product_id
WHERE l.quantity > 0
