-- fact_purchases: one row per purchase (purchase_id), for the ingest hours of the partition window
-- (incremental by hour: Dagster publishes one file per hour, replacing exactly the window's hours).
-- Keys: buyer_id (dim_buyer), product_key (the dim_product version valid at received_at, or
-- 'unknown'), date_key (dim_date: the day of the ingest hour, the day gold counts the purchase in).
select
    purchase_id,
    ingest_hour,
    date_key,
    received_at,
    purchase_date,
    buyer_id,
    product_key,
    product_id,
    category,
    department,
    total_amount,
    number_of_installments,
    paid_in_installments
from ({{ star_purchases(in_window("s.ingest_hour")) }})
order by ingest_hour, purchase_id
