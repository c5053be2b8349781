{# Fails on the versions of a slowly changing dimension (type 2) that break its validity rules, one row
   per broken version or key with the reason: an empty interval (valid_to <= valid_from), an interval
   overlapping the key's next version (or open while a later one exists), a key without exactly one
   current version (valid_to null), and, given `current`, a flag that disagrees with valid_to. #}
{% test scd2_valid(model, key, valid_from, valid_to, current=none) %}
with versions as (
    select
        {{ key }} as scd2_key,
        {{ valid_from }} as scd2_from,
        {{ valid_to }} as scd2_to,
        {% if current is not none %} {{ current }} {% else %} {{ valid_to }} is null {% endif %} as scd2_current,
        lead({{ valid_from }}) over (
            partition by {{ key }} order by {{ valid_from }}, {{ valid_to }} nulls last
        ) as next_from
    from {{ model }}
)
select scd2_key, scd2_from, scd2_to, 'empty interval' as reason
from versions where scd2_to <= scd2_from
union all
select scd2_key, scd2_from, scd2_to, 'overlaps the next version' as reason
from versions where next_from is not null and (scd2_to is null or next_from < scd2_to)
union all
select scd2_key, scd2_from, scd2_to, 'current flag disagrees with valid_to' as reason
from versions where scd2_current is distinct from (scd2_to is null)
union all
select scd2_key, null, null, 'current versions: ' || count(*) filter (where scd2_to is null) as reason
from versions group by scd2_key having count(*) filter (where scd2_to is null) <> 1
{% endtest %}
