-- dim_buyer: every buyer who has purchased, with their history to date (type 1), rebuilt whole on
-- every run from gold's buyer_daily: the window's days from this run (ref), every other day from the
-- published files (history.buyer_daily, see macros/gold.sql). Files written before buyer_daily had
-- first_purchase_at / last_purchase_at stand in with the start of their day.
with daily as (
    select day, buyer_id, purchases, spend, first_purchase_at, last_purchase_at from {{ ref('buyer_daily') }}
    union all
    select day, buyer_id, purchases, spend, first_purchase_at, last_purchase_at
    from history.buyer_daily
    where not ({{ in_window_days() }})
)
select
    buyer_id,
    min(coalesce(first_purchase_at, day::timestamptz)) as first_purchase_at,
    max(coalesce(last_purchase_at, day::timestamptz)) as last_purchase_at,
    min(day) as first_purchase_day,
    sum(purchases)::bigint as purchases_to_date,
    sum(spend)::decimal(18, 2) as spend_to_date
from daily
group by buyer_id
order by buyer_id
