-- items_category_performance: sales per day, category and product for the days the window touches,
-- from the fact's purchases (a purchase is one item) with each purchase's product version
-- (point in time), ranked within the category, and the category's return rate from the file drop's
-- KPIs where they hold the day.
with purchases as (
    select date_key as day, category, department, product_id, product_name, total_amount
    from ({{ star_purchases(in_window_days("cast(left(s.ingest_hour, 10) as date)")) }})
),

products as (
    select
        day,
        category,
        product_id,
        max(department) as department,  -- type 1 attributes: the same on every version
        max(product_name) as product_name,
        sum(total_amount)::decimal(18, 2) as revenue,
        count(*)::bigint as units
    from purchases
    group by day, category, product_id
),

ranked as (
    select
        *,
        sum(revenue) over (partition by day, category)::decimal(18, 2) as category_revenue,
        sum(revenue) over (partition by day) as day_revenue,
        row_number() over (partition by day, category order by revenue desc, product_id)::int as rank_in_category
    from products
)

select
    r.day,
    r.category,
    r.product_id,
    r.department,
    r.product_name,
    r.revenue,
    r.units,
    r.category_revenue,
    (r.revenue / r.category_revenue)::double as share_of_category,
    (r.revenue / r.day_revenue)::double as share_of_day,
    r.rank_in_category,
    dense_rank() over (partition by r.day order by r.category_revenue desc, r.category)::int as category_rank,
    k.avg_return_rate::double as return_rate
from ranked as r
left join {{ source('filedrop', 'category_kpis') }} as k
    on k.order_date = r.day and k.category = r.category
order by day, category_rank, rank_in_category
