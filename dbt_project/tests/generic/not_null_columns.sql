{# The contract's required columns of a model, checked in one scan: fails with one row per column
   that holds nulls (the column and how many rows). One test per model rather than one not_null per
   column: every dbt test is a node each gold run pays for, and the required columns are most of
   the columns. #}
{% test not_null_columns(model, columns) %}
with counts as (
    select
    {%- for column in columns %}
        count(*) - count({{ adapter.quote(column) }}) as {{ adapter.quote(column) }}{{ "," if not loop.last }}
    {%- endfor %}
    from {{ model }}
)
{%- for column in columns %}
select '{{ column }}' as column_name, {{ adapter.quote(column) }} as null_rows from counts
where {{ adapter.quote(column) }} > 0
{{ "union all" if not loop.last }}
{%- endfor %}
{% endtest %}
