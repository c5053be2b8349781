{# The contract's bounds of a model's numeric columns, checked in one scan: fails with one row per
   column holding values outside its bounds (the column and how many rows). ``bounds`` maps a
   column to any of minimum, maximum, exclusive_minimum, exclusive_maximum; nulls are
   not_null_columns' job. One test per model for the same reason as not_null_columns. #}
{% test columns_in_range(model, bounds) %}
with counts as (
    select
    {%- for column, bound in bounds.items() %}
        {%- set c = adapter.quote(column) %}
        count(*) filter (where {{ c }} is not null and (false
            {%- if 'minimum' in bound %} or {{ c }} < {{ bound['minimum'] }}{% endif %}
            {%- if 'maximum' in bound %} or {{ c }} > {{ bound['maximum'] }}{% endif %}
            {%- if 'exclusive_minimum' in bound %} or {{ c }} <= {{ bound['exclusive_minimum'] }}{% endif %}
            {%- if 'exclusive_maximum' in bound %} or {{ c }} >= {{ bound['exclusive_maximum'] }}{% endif %}
        )) as {{ c }}{{ "," if not loop.last }}
    {%- endfor %}
    from {{ model }}
)
{%- for column in bounds %}
select '{{ column }}' as column_name, {{ adapter.quote(column) }} as rows_out_of_range from counts
where {{ adapter.quote(column) }} > 0
{{ "union all" if not loop.last }}
{%- endfor %}
{% endtest %}
