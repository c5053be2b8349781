-- Sales per category and day, for every day the partition window touches (whole days).
with silver as (
    select cast(left(ingest_hour, 10) as date) as day, category, total_amount
    from {{ source('silver', 'purchases') }}
)
select
    day,
    category,
    count(*)::bigint as purchases,
    sum(total_amount)::decimal(18, 2) as revenue,
    avg(total_amount)::double as average_order_value
from silver
where {{ in_window_days() }}
group by day, category
order by day, category
