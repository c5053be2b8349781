-- Purchases and spend per buyer and day, for every day the partition window touches (whole days),
-- with the buyer's first and last purchase of the day (dim_buyer's history is built from them).
with silver as (
    select cast(left(ingest_hour, 10) as date) as day, buyer_id, total_amount, received_at
    from {{ source('silver', 'purchases') }}
)
select
    day,
    buyer_id,
    count(*)::bigint as purchases,
    sum(total_amount)::decimal(18, 2) as spend,
    min(received_at) as first_purchase_at,
    max(received_at) as last_purchase_at
from silver
where {{ in_window_days() }}
group by day, buyer_id
order by day, buyer_id
