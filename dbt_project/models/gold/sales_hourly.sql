-- Sales per ingest hour of the partition window.
select
    strptime(ingest_hour, '%Y-%m-%dT%H') as hour,
    count(*)::bigint as purchases,
    sum(total_amount)::decimal(18, 2) as revenue,
    count(distinct buyer_id)::bigint as unique_buyers,
    avg(total_amount)::double as average_ticket,
    avg(number_of_installments)::double as average_installments,
    avg(case when paid_in_installments then 1 else 0 end)::double as installment_share
from {{ source('silver', 'purchases') }}
where {{ in_window() }}
group by ingest_hour
order by hour
