-- lake.master_products_latest: each product's row from the newest export that had it (a row the loader
-- quarantined, say for a price typed as 「1,990」, leaves the product at its previous version)
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
    -- Excel shows Japan time without a zone
    timezone('Asia/Tokyo', CAST(updated_at AS TIMESTAMP)) AS updated_at
FROM lake.master_products_latest
