"""The lakehouse's settings: conflicts a JVM would only report at Spark's start are refused up front."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cart_lakehouse.settings import LakeSettings


@pytest.mark.parametrize("variable", ["JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS"])
def test_a_second_garbage_collector_in_the_jvm_environment_is_refused_naming_both(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "-Xss4m -XX:+UseG1GC")
    with pytest.raises(ValidationError) as refused:
        LakeSettings()  # the default CART_SPARK_JAVA_OPTIONS selects ParallelGC
    message = str(refused.value)
    assert variable in message
    assert "-XX:+UseG1GC" in message
    assert "-XX:+UseParallelGC" in message
    assert "CART_SPARK_JAVA_OPTIONS" in message


def test_one_collector_wherever_it_is_selected_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JAVA_TOOL_OPTIONS", "-XX:+UseG1GC -XX:+UseGCOverheadLimit")
    assert LakeSettings(spark_java_options="").spark_java_options == ""
    assert LakeSettings(spark_java_options="-XX:+UseG1GC -Xms2g").spark_java_options == "-XX:+UseG1GC -Xms2g"
    monkeypatch.setenv("JAVA_TOOL_OPTIONS", "-Xss4m -XX:+UseGCOverheadLimit")  # options, no collector
    assert LakeSettings().spark_java_options == "-XX:+UseParallelGC"
