-- Purchases and spend per buyer and day, for every day the partition window touches (whole days).
with silver as (
    select cast(left(ingest_hour, 10) as date) as day, buyer_id, total_amount
    from {{ source('silver', 'purchases') }}
)
select
    day,
    buyer_id,
    count(*)::bigint as purchases,
    sum(total_amount)::decimal(18, 2) as spend
from silver
where {{ in_window_days() }}
group by day, buyer_id
order by day, buyer_id
