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
