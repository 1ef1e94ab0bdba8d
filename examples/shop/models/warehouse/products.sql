SELECT
    CAST(product_id AS INTEGER) AS product_id,
    trim(sku) AS sku,
    trim(product_name) AS product_name,
    -- the product master has a few items whose category was never filled in
    coalesce(nullif(trim(category), ''), 'Uncategorized') AS category,
    trim(brand) AS brand,
    CAST(unit_price AS INTEGER) AS unit_price,
    CAST(unit_cost AS INTEGER) AS unit_cost,
    CAST(launched_on AS DATE) AS launched_on,
    CAST(is_active AS BOOLEAN) AS is_active,
    CAST(updated_at AS TIMESTAMPTZ) AS updated_at
FROM lake.products
QUALIFY row_number() OVER (PARTITION BY product_id ORDER BY updated_at DESC) = 1
