{# Fails on the rows whose value lies outside the bounds (each bound optional; nulls are not_null's job). #}
{% test in_range(model, column_name, minimum=none, maximum=none, exclusive_minimum=none, exclusive_maximum=none) %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} is not null and (
    false
    {% if minimum is not none %} or {{ column_name }} < {{ minimum }} {% endif %}
    {% if maximum is not none %} or {{ column_name }} > {{ maximum }} {% endif %}
    {% if exclusive_minimum is not none %} or {{ column_name }} <= {{ exclusive_minimum }} {% endif %}
    {% if exclusive_maximum is not none %} or {{ column_name }} >= {{ exclusive_maximum }} {% endif %}
)
{% endtest %}
