WITH latest AS (
    SELECT
        *,
        regexp_full_match(trim(email), '[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}') AS email_ok
    FROM lake.pos_customers
    QUALIFY row_number() OVER (PARTITION BY customer_id ORDER BY updated_at DESC) = 1
)
SELECT
    CAST(customer_id AS INTEGER) AS customer_id,
    trim(full_name) AS full_name,
    CASE WHEN email_ok THEN lower(trim(email)) END AS email,
    coalesce(email_ok, FALSE) AS has_valid_email,
    trim(phone) AS phone,
    lower(gender) AS gender,
    CAST(birth_date AS DATE) AS birth_date,
    trim(prefecture) AS prefecture,
    CAST(registered_at AS TIMESTAMPTZ) AS registered_at,
    CAST(updated_at AS TIMESTAMPTZ) AS updated_at
FROM latest
