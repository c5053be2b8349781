-- sales_performance: sales figures per hour and per day (grain, period_start) for the marts' days
-- (the window's days and the following days whose moving figures they feed, up to var mart_day_end),
-- from the purchases of the fact (silver's rows) and dim_buyer. Day-over-day and 7-day figures read
-- the 6 days before (var lookback_start): the previous day, and this day and the 6 before.
-- Only periods with purchases have rows.
with purchases as (
    select
        strptime(ingest_hour, '%Y-%m-%dT%H')::timestamptz as hour,
        cast(left(ingest_hour, 10) as date) as day,
        buyer_id,
        total_amount,
        number_of_installments,
        paid_in_installments
    from {{ source('silver', 'purchases') }}
    where ingest_hour >= '{{ var("lookback_start") }}T00' and ingest_hour < '{{ var("mart_day_end") }}T00'
),

tagged as (
    select
        p.*,
        date_trunc('hour', b.first_purchase_at) = p.hour as first_in_hour,
        b.first_purchase_day = p.day as first_in_day
    from purchases as p
    left join {{ ref('dim_buyer') }} as b using (buyer_id)
),

{% set figures %}
        sum(total_amount)::decimal(18, 2) as revenue,
        count(*)::bigint as purchases,
        count(distinct buyer_id)::bigint as buyers,
        (count(*) filter (where paid_in_installments) / count(*))::double as installment_share,
        avg(number_of_installments)::double as average_installments,
        count(*) filter (where number_of_installments = 1)::bigint as installments_1,
        count(*) filter (where number_of_installments between 2 and 3)::bigint as installments_2_3,
        count(*) filter (where number_of_installments between 4 and 6)::bigint as installments_4_6,
        count(*) filter (where number_of_installments between 7 and 12)::bigint as installments_7_12,
        count(*) filter (where number_of_installments between 13 and 24)::bigint as installments_13_24
{% endset %}

periods as (
    select
        'hour' as grain,
        hour as period_start,
        day,
        count(distinct buyer_id) filter (where first_in_hour)::bigint as new_buyers,
        {{ figures }}
    from tagged
    group by hour, day
    union all
    select
        'day' as grain,
        day::timestamptz as period_start,
        day,
        count(distinct buyer_id) filter (where first_in_day)::bigint as new_buyers,
        {{ figures }}
    from tagged
    group by day
),

-- the same period on each of the 6 days before (an hour: the same hour), for the moving figures
moving as (
    select
        c.grain,
        c.period_start,
        sum(w.revenue) as revenue_7d,
        sum(w.purchases) as purchases_7d
    from periods as c
    join periods as w
        on w.grain = c.grain
        and w.period_start between c.period_start - interval 6 day and c.period_start
        and hour(w.period_start) = hour(c.period_start)
    group by c.grain, c.period_start
),

compared as (
    select
        c.*,
        coalesce(prev.revenue, 0)::decimal(18, 2) as revenue_prev,
        coalesce(prev.purchases, 0)::bigint as purchases_prev,
        m.revenue_7d,
        m.purchases_7d
    from periods as c
    left join periods as prev on prev.grain = c.grain and prev.period_start = c.period_start - interval 1 day
    join moving as m on m.grain = c.grain and m.period_start = c.period_start
)

select
    grain,
    period_start,
    day,
    revenue,
    purchases,
    {{ money_ratio('revenue', 'purchases') }} as average_ticket,
    buyers,
    new_buyers,
    (buyers - new_buyers)::bigint as returning_buyers,
    installment_share,
    average_installments,
    installments_1,
    installments_2_3,
    installments_4_6,
    installments_7_12,
    installments_13_24,
    revenue_prev,
    purchases_prev,
    case when revenue_prev > 0 then (100 * (revenue - revenue_prev) / revenue_prev)::double end as revenue_dod_pct,
    case when purchases_prev > 0 then (100 * (purchases - purchases_prev) / purchases_prev)::double end
        as purchases_dod_pct,
    (revenue_7d / 7)::double as revenue_7d_avg,
    (purchases_7d / 7)::double as purchases_7d_avg
from compared
where {{ in_mart_days() }}
order by day, grain desc, period_start
