-- Page views of people (not robots, not assets, not errors) on the web shop, with the store each view is
-- about: a store's own page (/stores/S001) or a stock check for a product in a store (?store=S001).
SELECT
    time AS viewed_at,
    CAST(timezone('Asia/Tokyo', time) AS DATE) AS view_date,
    md5(remote_addr || '|' || coalesce(user_agent, '')) AS visitor,
    CASE
        WHEN path LIKE '/stores/%' THEN 'store'
        WHEN path LIKE '/products/%/stock%' THEN 'stock_check'
        WHEN path LIKE '/products/%' THEN 'product'
        WHEN path LIKE '/search%' THEN 'search'
        ELSE 'other'
    END AS page_type,
    -- regexp_extract gives '' when nothing matches
    coalesce(nullif(regexp_extract(path, '^/stores/(S[0-9]+)', 1), ''),
             nullif(regexp_extract(path, '[?&]store=(S[0-9]+)', 1), '')) AS store_code,
    nullif(regexp_extract(path, '^/products/(SKU-[0-9]+)', 1), '') AS sku,
    path,
    status
FROM lake.web_access
WHERE method = 'GET'
  AND status < 400
  AND status <> 304
  AND NOT regexp_matches(path, '^/(static/|favicon)')
  AND NOT regexp_matches(coalesce(user_agent, ''), '(?i)bot|crawler|spider')
