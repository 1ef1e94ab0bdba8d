WITH as_of AS (
    SELECT max(order_date) AS as_of_date
    FROM warehouse.orders
),
per_customer AS (
    SELECT
        customer_id,
        min(order_date) AS first_order_date,
        max(order_date) AS last_order_date,
        count(DISTINCT order_id) AS frequency,
        sum(amount) AS monetary
    FROM warehouse.order_lines
    WHERE order_status = 'completed' AND customer_id IS NOT NULL
    GROUP BY customer_id
),
measured AS (
    SELECT
        p.customer_id,
        c.prefecture,
        c.registered_at,
        p.first_order_date,
        p.last_order_date,
        a.as_of_date,
        CAST(a.as_of_date - p.last_order_date AS INTEGER) AS recency_days,
        CAST(p.frequency AS BIGINT) AS frequency,
        CAST(p.monetary AS BIGINT) AS monetary
    FROM per_customer AS p
    JOIN warehouse.customers AS c ON c.customer_id = p.customer_id
    CROSS JOIN as_of AS a
),
scored AS (
    -- quintile scores 1 (worst) .. 5 (best); equal values always get the same score
    SELECT
        *,
        CAST(least(5, 1 + floor(5 * percent_rank() OVER (ORDER BY recency_days DESC))) AS INTEGER) AS r_score,
        CAST(least(5, 1 + floor(5 * percent_rank() OVER (ORDER BY frequency))) AS INTEGER) AS f_score,
        CAST(least(5, 1 + floor(5 * percent_rank() OVER (ORDER BY monetary))) AS INTEGER) AS m_score
    FROM measured
)
SELECT
    customer_id,
    prefecture,
    registered_at,
    first_order_date,
    last_order_date,
    as_of_date,
    recency_days,
    frequency,
    monetary,
    r_score,
    f_score,
    m_score,
    CAST(r_score AS VARCHAR) || CAST(f_score AS VARCHAR) || CAST(m_score AS VARCHAR) AS rfm_code,
    CASE
        WHEN r_score >= 4 AND f_score >= 4 THEN 'Champions'
        WHEN r_score >= 3 AND f_score >= 4 THEN 'Loyal'
        WHEN r_score >= 4 AND f_score >= 2 THEN 'Potential loyalist'
        WHEN r_score >= 4 THEN 'New customer'
        WHEN r_score = 3 AND f_score = 3 THEN 'Needs attention'
        WHEN r_score = 3 THEN 'Promising'
        WHEN r_score = 1 AND f_score = 5 THEN 'Cannot lose them'
        WHEN f_score >= 3 THEN 'At risk'
        WHEN r_score = 2 THEN 'Hibernating'
        ELSE 'Lost'
    END AS segment
FROM scored
ORDER BY customer_id
