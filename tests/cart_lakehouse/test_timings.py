from cart_lakehouse.timings import Timings, dbt_node_seconds


def test_spans_keep_their_order_and_a_repeated_name_adds_up() -> None:
    timings = Timings()
    with timings.span("read"):
        pass
    timings.add("write", 2.0)
    timings.add("read", 1.5)
    timings.add("write", 0.5)
    timings.add("publish", 0.25)

    assert list(timings.seconds) == ["read", "write", "publish"]
    assert timings.seconds["write"] == 2.5
    assert 1.5 <= timings.seconds["read"] < 2.0
    assert timings.metadata()["timings"].value == {
        "read": round(timings.seconds["read"], 3),
        "write": 2.5,
        "publish": 0.25,
    }


def test_a_span_is_recorded_when_its_block_raises() -> None:
    timings = Timings()
    try:
        with timings.span("failing"):
            raise ValueError("boom")
    except ValueError:
        pass
    assert "failing" in timings.seconds


def test_dbt_node_seconds_names_models_and_tests_without_project_or_hash() -> None:
    run_results = {
        "elapsed_time": 1.8,
        "results": [
            {"unique_id": "model.cart_gold.sales_hourly", "execution_time": 0.13},
            {"unique_id": "test.cart_gold.sales_hourly__hour__unique.1c1a6e1a14", "execution_time": 0.07},
            {"unique_id": "model.cart_gold.buyer_daily", "execution_time": None},
        ],
    }
    assert dbt_node_seconds(run_results) == {
        "model.sales_hourly": 0.13,
        "test.sales_hourly__hour__unique": 0.07,
        "model.buyer_daily": 0.0,
    }
