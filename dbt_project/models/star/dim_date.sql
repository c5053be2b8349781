-- dim_date: the calendar from CART_PARTITIONS_START's day (var calendar_start) to 31 December of
-- the year after the run, rebuilt whole on every run. ISO weekday and week (isodow, week,
-- isoyear), English names.
with days as (
    select cast(d as date) as date_key
    from generate_series(
        date '{{ var("calendar_start") }}',
        make_date(year(current_date) + 1, 12, 31),
        interval 1 day
    ) as t(d)
)
select
    date_key,
    isodow(date_key)::int as weekday,
    dayname(date_key) as weekday_name,
    week(date_key)::int as iso_week,
    isoyear(date_key)::int as iso_year,
    month(date_key)::int as month,
    monthname(date_key) as month_name,
    quarter(date_key)::int as quarter,
    year(date_key)::int as year
from days
order by date_key
