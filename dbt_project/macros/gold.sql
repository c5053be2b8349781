{# Where a gold model writes its Parquet file for Dagster to publish. #}
{% macro gold_location(model_name) -%}
  {{ var('out_dir') }}/{{ model_name }}.parquet
{%- endmacro %}

{# The ingest hours of the partition window (hourly models). #}
{% macro in_window(column='ingest_hour') -%}
  {{ column }} >= '{{ var("window_start") }}' and {{ column }} < '{{ var("window_end") }}'
{%- endmacro %}

{# The days the partition window touches (daily models recompute whole days). #}
{% macro in_window_days(column='day') -%}
  {{ column }} >= date '{{ var("day_start") }}' and {{ column }} < date '{{ var("day_end") }}'
{%- endmacro %}

{# The silver source of a run: a view over the run's silver files. Created at run start rather than
   named in the source's external_location, which dbt renders while parsing: the parsed project
   (the manifest) then holds no var, so one parse serves every run. #}
{% macro silver_view() -%}
  create or replace view silver.purchases as
  select * from read_parquet({{ var('silver_files') }}, union_by_name = true)
{%- endmacro %}

{# The marts' days: the window's days and the following days whose published rows depend on them
   (moving figures), up to var('mart_day_end'). #}
{% macro in_mart_days(column='day') -%}
  {{ column }} >= date '{{ var("day_start") }}' and {{ column }} < date '{{ var("mart_day_end") }}'
{%- endmacro %}

{# The products of the star's dim_product, one row per source row: the committed CSV (source
   'seed', staged by Dagster as Parquet typed by the lakehouse contract) and every file-drop
   products set's silver rows (source: the set id, read from the file's set_id= folder). Not
   validated here: dim_product skips what the products contract refuses. #}
{% macro products_view() -%}
  create or replace view filedrop.products as
  select product_id, product_name, category, brand, department, retail_price, 'seed' as source
  from read_parquet('{{ var("seed_products_file") }}')
  union all
  select id as product_id, name as product_name, category, brand, department,
         retail_price::decimal(12, 2) as retail_price,
         regexp_extract(filename, 'set_id=([^/]+)/', 1) as source
  from read_parquet({{ var('product_files') }}, filename = true, union_by_name = true)
{%- endmacro %}

{# The published buyer_daily rows of the days outside the window (the window's own come from
   ref('buyer_daily')), for dim_buyer. The first file is empty and typed by the contract, so
   files written before a column existed read it as null. #}
{% macro buyer_history_view() -%}
  create or replace view history.buyer_daily as
  select * from read_parquet({{ var('buyer_history_files') }}, union_by_name = true)
{%- endmacro %}

{# The file drop's category KPIs (a Delta table) of the marts' days, staged as Parquet by Dagster:
   DuckDB's delta extension would have to be downloaded at first use. #}
{% macro category_kpis_view() -%}
  create or replace view filedrop.category_kpis as
  select * from read_parquet('{{ var("category_kpi_file") }}')
{%- endmacro %}

{# Silver purchases with the dim_product version valid when each was received (point in time):
   product_key 'unknown' and category 'unknown' when no version is. The fact and the marts read
   purchases through it, so they agree on every purchase's product version. #}
{% macro star_purchases(where) -%}
  select
      s.purchase_id,
      strptime(s.ingest_hour, '%Y-%m-%dT%H')::timestamptz as ingest_hour,
      cast(left(s.ingest_hour, 10) as date) as date_key,
      s.received_at,
      s.purchase_date,
      s.buyer_id,
      coalesce(p.product_key, 'unknown') as product_key,
      s.product_id,
      coalesce(p.category, 'unknown') as category,
      p.department,
      p.product_name,
      s.total_amount,
      s.number_of_installments,
      s.paid_in_installments
  from {{ source('silver', 'purchases') }} as s
  left join {{ ref('dim_product') }} as p
      on p.product_id = s.product_id
      and s.received_at >= p.valid_from
      and (p.valid_to is null or s.received_at < p.valid_to)
  where {{ where }}
{%- endmacro %}

{# round(numerator / denominator, 2) of a money amount, exact: in whole cents, half away from zero
   (DuckDB divides decimals as doubles, which can round a half cent the wrong way). #}
{% macro money_ratio(numerator, denominator) -%}
  cast(
      cast((round({{ numerator }} * 100)::hugeint * 2 + {{ denominator }}) // (2 * {{ denominator }}) as decimal(18, 0))
      * 0.01 as decimal(18, 2)
  )
{%- endmacro %}
