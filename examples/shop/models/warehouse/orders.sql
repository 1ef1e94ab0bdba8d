WITH latest AS (
    -- the POS extract can carry several versions of an order header: the latest one wins
    SELECT *
    FROM lake.pos_orders
    QUALIFY row_number() OVER (PARTITION BY order_id ORDER BY updated_at DESC) = 1
)
SELECT
    CAST(order_id AS BIGINT) AS order_id,
    CAST(store_id AS INTEGER) AS store_id,
    CAST(customer_id AS INTEGER) AS customer_id,
    customer_id IS NULL AS is_anonymous,
    CAST(ordered_at AS TIMESTAMPTZ) AS ordered_at,
    timezone('Asia/Tokyo', CAST(ordered_at AS TIMESTAMPTZ)) AS ordered_at_jst,
    CAST(timezone('Asia/Tokyo', CAST(ordered_at AS TIMESTAMPTZ)) AS DATE) AS order_date,
    lower(status) AS status,
    lower(payment_method) AS payment_method,
    CAST(updated_at AS TIMESTAMPTZ) AS updated_at
FROM latest
