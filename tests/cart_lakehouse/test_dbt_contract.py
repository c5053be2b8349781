"""dbt's tests of the gold run's models come from the contracts: the committed schema files are what
the contracts give, and the generated relationships and scd2 tests catch bad data in a real dbt run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cart_lakehouse.dbt_contract import TARGETS, column_tests, main, model_rule_tests, render, scd2_test
from contracts import Column, ForeignKey, load_contract

DBT_PROJECT = TARGETS[0].path.parents[2]


def models(target_folder: str) -> dict[str, Any]:
    target = next(t for t in TARGETS if t.folder == target_folder)
    return {m["name"]: m for m in yaml.safe_load(render(target))["models"]}


def test_the_committed_dbt_tests_agree_with_the_contracts() -> None:
    assert [(t.folder, t.contract) for t in TARGETS] == [
        ("gold", "lakehouse"),
        ("star", "analytics"),
        ("marts", "analytics"),
    ]
    for target in TARGETS:
        assert target.path == DBT_PROJECT / "models" / target.folder / "_contract.yml"
        text = target.path.read_text(encoding="utf-8")
        assert text == render(target), "run: python -m cart_lakehouse.dbt_contract"
        assert text.startswith(f"# Generated from contracts/{target.contract}.odcs.yaml ")
        assert [m["name"] for m in yaml.safe_load(text)["models"]] == list(target.models)
    assert main(["--check"]) == 0


def test_check_names_every_file_out_of_date(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    import cart_lakehouse.dbt_contract as generator

    monkeypatch.setattr(generator, "MODELS_DIR", tmp_path)
    assert main(["--check"]) == 1
    assert capsys.readouterr().err.count("is out of date") == len(TARGETS)
    assert main([]) == 0
    assert main(["--check"]) == 0
    (tmp_path / "marts" / "_contract.yml").write_text("edited by hand\n", encoding="utf-8")
    assert main(["--check"]) == 1
    assert "marts/_contract.yml is out of date" in capsys.readouterr().err


def test_every_rule_of_a_gold_table_becomes_a_named_dbt_test() -> None:
    gold = models("gold")
    contract = load_contract("lakehouse")
    hourly = gold["sales_hourly"]
    (required, ranges) = hourly["data_tests"]
    assert required["not_null_columns"] == {
        "name": "sales_hourly__required__not_null",
        "arguments": {"columns": [c.name for c in contract.columns("sales_hourly") if c.required]},
    }
    assert ranges["columns_in_range"]["name"] == "sales_hourly__bounds__in_range"
    assert ranges["columns_in_range"]["arguments"]["bounds"]["installment_share"] == {"minimum": 0, "maximum": 1}
    columns = {c["name"]: c for c in hourly["columns"]}
    assert columns["hour"]["data_tests"] == [{"unique": {"name": "sales_hourly__hour__unique"}}]
    category = {c["name"]: c for c in gold["sales_by_category_daily"]["columns"]}["category"]
    allowed = category["data_tests"][0]["accepted_values"]["arguments"]["values"]
    assert allowed == contract.column("category", "sales_by_category_daily").custom["enum"]
    key = next(t["unique_key"] for t in gold["buyer_daily"]["data_tests"] if "unique_key" in t)
    assert key["arguments"]["columns"] == ["day", "buyer_id"]
    # a composite key is not unique column by column
    assert all("unique" not in t for c in gold["buyer_daily"]["columns"] for t in c.get("data_tests", []))


def test_required_columns_and_bounds_are_one_test_per_model_each() -> None:
    """Each dbt test costs every gold run a node: the rules most columns carry are checked per model."""
    for folder in ("gold", "star", "marts"):
        for name, model in models(folder).items():
            kinds = [next(iter(t)) for t in model.get("data_tests", [])]
            assert kinds.count("not_null_columns") == 1, name
            assert kinds.count("columns_in_range") <= 1, name
            column_kinds = {next(iter(t)) for c in model["columns"] for t in c.get("data_tests", [])}
            assert not column_kinds & {"not_null", "in_range"}, name


def test_a_foreign_key_becomes_a_relationships_test_to_the_referenced_model() -> None:
    fact = {c["name"]: c for c in models("star")["fact_purchases"]["columns"]}
    assert fact["buyer_id"]["data_tests"] == [
        {
            "relationships": {
                "name": "fact_purchases__buyer_id__relationship",
                "arguments": {"to": "ref('dim_buyer')", "field": "buyer_id"},
            }
        },
    ]
    relationships = sorted(
        t["relationships"]["arguments"]["to"]
        for c in fact.values()
        for t in c.get("data_tests", [])
        if "relationships" in t
    )
    assert relationships == ["ref('dim_buyer')", "ref('dim_date')", "ref('dim_product')"]


def test_the_scd2_property_becomes_one_scd2_valid_test_of_the_dimension() -> None:
    star = models("star")
    assert [t for t in star["dim_product"]["data_tests"] if "scd2_valid" in t] == [
        {
            "scd2_valid": {
                "name": "dim_product__scd2__valid",
                "arguments": {
                    "key": "product_id",
                    "valid_from": "valid_from",
                    "valid_to": "valid_to",
                    "current": "is_current",
                },
            }
        }
    ]
    assert star["dim_product"]["config"]["meta"]["contract"] == "contracts/analytics.odcs.yaml#dim_product"
    # one-column key: a column test, no unique_key
    assert not [t for t in star["dim_buyer"]["data_tests"] if "unique_key" in t]
    columns = [c.name for c in load_contract("analytics").columns("dim_product")]
    with pytest.raises(ValueError, match="scd2 needs key, from, to"):
        scd2_test("dim_product", {"key": "product_id", "from": "valid_from"}, columns)
    with pytest.raises(ValueError, match="does not have: no_such_column"):
        scd2_test("dim_product", {"key": "no_such_column", "from": "valid_from", "to": "valid_to"}, columns)


def test_the_marts_composite_keys_are_unique_key_tests() -> None:
    marts = models("marts")
    keys = {
        name: next(t["unique_key"] for t in m["data_tests"] if "unique_key" in t)["arguments"]["columns"]
        for name, m in marts.items()
    }
    assert keys == {
        "sales_performance": ["grain", "period_start"],
        "items_category_performance": ["day", "category", "product_id"],
    }


# A tiny dbt-duckdb project: one model per case, each with the tests the generator writes for the
# contract's rule (scd2_valid from dim_product's property, relationships from a foreign key).
_TS = "timestamp '{}'"
SCD2_CASES = {  # model -> rows (product_id, valid_from, valid_to or None, is_current)
    "scd2_ok": [
        ("P1", "1970-01-01", "2026-01-01", False),
        ("P1", "2026-01-01", None, True),
        ("P2", "1970-01-01", None, True),
    ],
    "scd2_overlap": [("P1", "1970-01-01", "2026-02-01", False), ("P1", "2026-01-01", None, True)],
    "scd2_two_current": [("P1", "1970-01-01", None, True), ("P1", "2026-01-01", None, True)],
    "scd2_no_current": [("P1", "1970-01-01", "2026-01-01", False)],
    "scd2_flag": [("P1", "1970-01-01", "2026-01-01", True), ("P1", "2026-01-01", None, True)],
    "scd2_empty": [("P1", "1970-01-01", "1970-01-01", False), ("P1", "1970-01-01", None, True)],
}
RULE_CASES = {  # model -> rows (amount, installments, note); amount and installments required, bounded
    "rules_ok": [("10.00", 1, None), ("0.01", 24, "x")],
    "rules_nulls": [(None, 1, None), (None, None, None), ("5.00", 3, None)],
    "rules_out_of_range": [("0.00", 25, None), ("-1.00", 0, None), ("3.00", 2, None)],
}
CHILDREN = {"purchases_ok": ["B1", "B2", "B1"], "purchases_orphan": ["B1", "B9", "B8"]}  # buyers: B1, B2


def _column(name: str, logical: str, physical: str, required: bool, options: dict[str, Any]) -> Column:
    return Column(name, logical, physical, required, False, None, "", options, {}, ())


def _scd2_model(rows: list[tuple[str, str, str | None, bool]]) -> str:
    values = ", ".join(
        f"('{p}', {_TS.format(f)}, {'null' if t is None else _TS.format(t)}, {str(c).lower()})" for p, f, t, c in rows
    )
    return f"select * from (values {values}) as v(product_id, valid_from, valid_to, is_current)\n"


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, int | None]]:
    """``dbt build`` of the tiny project, in its own process (dbt keeps process-wide state):
    every test's name -> (status, failing rows)."""
    project = tmp_path_factory.mktemp("tiny_dbt")
    (project / "dbt_project.yml").write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "version": "1.0.0",
                "config-version": 2,
                "profile": "tiny",
                "flags": {"send_anonymous_usage_stats": False, "partial_parse": False},
                "models": {"tiny": {"+materialized": "table"}},
            }
        )
    )
    profile = {"type": "duckdb", "path": ":memory:", "threads": 2}
    (project / "profiles.yml").write_text(yaml.safe_dump({"tiny": {"target": "t", "outputs": {"t": profile}}}))
    shutil.copytree(DBT_PROJECT / "tests" / "generic", project / "tests" / "generic")
    model_dir = project / "models"
    model_dir.mkdir()
    contract = load_contract("analytics")
    scd2 = next(o for o in contract.document.schema_ or [] if o.name == "dim_product").customProperties or []
    spec = next(c.value for c in scd2 if c.property == "scd2")
    entries = []
    for name, rows in SCD2_CASES.items():
        (model_dir / f"{name}.sql").write_text(_scd2_model(rows))
        columns = ("product_id", "valid_from", "valid_to", "is_current")
        entries.append({"name": name, "data_tests": [scd2_test(name, spec, columns)]})
    rule_columns = [
        _column("amount", "number", "decimal(12,2)", required=True, options={"exclusiveMinimum": 0}),
        _column("installments", "integer", "int", required=True, options={"minimum": 1, "maximum": 24}),
        _column("note", "string", "string", required=False, options={}),
    ]
    for name, rule_rows in RULE_CASES.items():
        values = ", ".join(
            "(" + ", ".join("null" if v is None else (f"'{v}'" if isinstance(v, str) else str(v)) for v in row) + ")"
            for row in rule_rows
        )
        (model_dir / f"{name}.sql").write_text(
            f"select amount::decimal(12, 2) as amount, installments::int as installments, note\n"
            f"from (values {values}) as v(amount, installments, note)\n"
        )
        entries.append({"name": name, "data_tests": model_rule_tests(name, rule_columns)})
    (model_dir / "buyers.sql").write_text("select * from (values ('B1'), ('B2')) as v(buyer_id)\n")
    buyer_id = contract.column("buyer_id", "fact_purchases")
    for name, buyers in CHILDREN.items():
        values = ", ".join(f"('{b}')" for b in buyers)
        (model_dir / f"{name}.sql").write_text(f"select * from (values {values}) as v(buyer_id)\n")
        key = ForeignKey(name, "buyer_id", "buyers", "buyer_id")
        tests = [t for t in column_tests(name, buyer_id, single_key=False, foreign_keys=(key,)) if "relationships" in t]
        entries.append({"name": name, "columns": [{"name": "buyer_id", "data_tests": tests}]})
    (model_dir / "_tests.yml").write_text(yaml.safe_dump({"version": 2, "models": entries}, sort_keys=False))

    dbt = Path(sys.executable).parent / "dbt"
    target = project / "target"
    args = ["--project-dir", str(project), "--profiles-dir", str(project), "--target-path", str(target)]
    completed = subprocess.run(
        [str(dbt), "build", *args, "--log-path", str(project / "logs")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert (target / "run_results.json").exists(), completed.stdout + completed.stderr
    results = json.loads((target / "run_results.json").read_text())["results"]
    return {
        r["unique_id"].split(".")[2]: (r["status"], r["failures"])
        for r in results
        if r["unique_id"].startswith("test.")
    }


def test_scd2_valid_passes_on_a_valid_dimension_and_fails_on_each_broken_rule(
    tiny_build: dict[str, tuple[str, int | None]],
) -> None:
    scd2 = {name.removesuffix("__scd2__valid"): result for name, result in tiny_build.items() if "__scd2__" in name}
    assert scd2 == {
        "scd2_ok": ("pass", 0),
        "scd2_overlap": ("fail", 1),  # the first version ends after the second starts
        "scd2_two_current": ("fail", 2),  # the first is open while a later one exists; two current versions
        "scd2_no_current": ("fail", 1),
        "scd2_flag": ("fail", 1),  # a closed version flagged current
        "scd2_empty": ("fail", 1),  # valid_to = valid_from
    }


def test_required_columns_and_bounds_fail_naming_each_broken_column(
    tiny_build: dict[str, tuple[str, int | None]],
) -> None:
    assert tiny_build["rules_ok__required__not_null"] == ("pass", 0)
    assert tiny_build["rules_ok__bounds__in_range"] == ("pass", 0)
    assert tiny_build["rules_nulls__required__not_null"] == ("fail", 2)  # amount and installments hold nulls
    assert tiny_build["rules_nulls__bounds__in_range"] == ("pass", 0)  # nulls are not_null's job
    assert tiny_build["rules_out_of_range__bounds__in_range"] == ("fail", 2)  # both columns out of bounds
    assert tiny_build["rules_out_of_range__required__not_null"] == ("pass", 0)


def test_a_relationships_test_fails_on_a_key_its_dimension_lacks(tiny_build: dict[str, tuple[str, int | None]]) -> None:
    assert tiny_build["purchases_ok__buyer_id__relationship"] == ("pass", 0)
    assert tiny_build["purchases_orphan__buyer_id__relationship"] == ("fail", 2)  # B9 and B8
