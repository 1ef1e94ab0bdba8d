SELECT
    CAST(store_id AS INTEGER) AS store_id,
    trim(store_code) AS store_code,
    trim(store_name) AS store_name,
    trim(prefecture) AS prefecture,
    trim(region) AS region,
    CAST(opened_on AS DATE) AS opened_on,
    CAST(floor_area_m2 AS INTEGER) AS floor_area_m2,
    CAST(updated_at AS TIMESTAMPTZ) AS updated_at
FROM lake.pos_stores
QUALIFY row_number() OVER (PARTITION BY store_id ORDER BY updated_at DESC) = 1
