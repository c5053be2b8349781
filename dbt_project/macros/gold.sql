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
