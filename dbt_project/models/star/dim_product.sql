-- dim_product: every version of every product (slowly changing type 2), rebuilt whole on every run.
-- Sources in order: the committed CSV ('seed', valid from 1970-01-01), then each file-drop products
-- set by set id (= the time the set was formed, which is when its version becomes valid). A row
-- opens a new version only when its category or retail_price differs from the product's previous
-- row; name, brand and department are type 1 (every version shows the latest). A row the lakehouse
-- contract's products table refuses is skipped, as reference/products does
-- (cart_lakehouse/jobs/products.py, dimension()): the rules come from that contract through the
-- product_rules var, and the check star/dim_product:current_matches_reference proves that the
-- current versions are that dimension.
{% set rules = var('product_rules') %}
with usable as (
    select
        *,
        case
            when source = 'seed' then timestamptz '1970-01-01 00:00:00+00'
            -- the set id's time: to the microsecond, or to the second in ids of older lakes
            else strptime(split_part(source, '-', 1), ['%Y%m%dT%H%M%S.%fZ', '%Y%m%dT%H%M%SZ'])::timestamptz
        end as seen_at,
        -- the seed first, then the sets (their ids sort by the time they were formed)
        (source <> 'seed')::int as after_seed
    from {{ source('filedrop', 'products') }}
    where product_id is not null
      and regexp_matches(product_id, '{{ rules["id_pattern"] }}')
      and product_name is not null
      and brand is not null
      and category in ({% for c in rules["categories"] %}'{{ c }}'{{ "," if not loop.last }}{% endfor %})
      and department in ({% for d in rules["departments"] %}'{{ d }}'{{ "," if not loop.last }}{% endfor %})
      and retail_price is not null
      and retail_price > {{ rules["price_above"] }}
      and retail_price <= {{ rules["price_max"] }}
),

ordered as (
    select
        *,
        lag(category) over by_product as previous_category,
        lag(retail_price) over by_product as previous_price,
        row_number() over (partition by product_id order by after_seed desc, source desc) as recency
    from usable
    window by_product as (partition by product_id order by after_seed, source)
),

latest as (
    select product_id, product_name, brand, department from ordered where recency = 1
),

versions as (
    select
        product_id,
        category,
        retail_price,
        source,
        seen_at as valid_from,
        lead(seen_at) over (partition by product_id order by after_seed, source) as valid_to
    from ordered
    where previous_category is null  -- the product's first row
       or category <> previous_category
       or retail_price <> previous_price
)

select
    v.product_id || '@' || v.source as product_key,
    v.product_id,
    l.product_name,
    l.brand,
    v.category,
    l.department,
    v.retail_price::decimal(12, 2) as retail_price,
    v.valid_from,
    v.valid_to,
    v.valid_to is null as is_current,
    v.source
from versions as v
join latest as l using (product_id)
-- two sets formed at the same instant: the later id's version wins, the earlier is never valid
where v.valid_to is null or v.valid_to > v.valid_from

union all

-- the unknown member: what a purchase of a product no version describes points to
select
    'unknown', 'unknown', null, null, 'unknown', null, null,
    timestamptz '1970-01-01 00:00:00+00', null, true, 'unknown'

order by product_key
