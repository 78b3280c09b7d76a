"""The data plane's typed facts: what counts as something to record, and how the answer's check
extends the facts found before the forward."""

from __future__ import annotations

from helio_proxy.dataplane.facts import DataPlaneFacts, SchemaFacts
from helio_proxy.dataplane.scanning import Finding
from helio_proxy.dataplane.schemas import SchemaError

IN = Finding("keys", "aws_access_key", "secret", "arguments", "$.arguments.key", "flag")
OUT = Finding("cards", "card_number", "secret", "results", "$.result.content[0].text", "redact")


def test_facts_with_nothing_set_say_nothing_and_any_field_is_something_to_record() -> None:
    assert not DataPlaneFacts()
    assert DataPlaneFacts(credential="ci-bot")
    assert DataPlaneFacts(rule="lenient")
    assert DataPlaneFacts(unknown_tool="warn")
    assert DataPlaneFacts(input_schema=SchemaFacts("warn", ()))
    assert DataPlaneFacts(output_schema=SchemaFacts("warn", ()))
    assert DataPlaneFacts(findings=(IN,))


def test_the_answers_check_adds_its_findings_after_the_arguments_and_keeps_the_earlier_facts() -> None:
    schema = SchemaFacts("enforce", (SchemaError("$.amount", "a number", "type"),))
    before = DataPlaneFacts(credential="ci-bot", rule="payments", input_schema=schema, findings=(IN,))
    answer_schema = SchemaFacts("warn", (SchemaError("$", "an object", "type"),))
    after = DataPlaneFacts(rule="payments", output_schema=answer_schema, findings=(OUT,))
    merged = before.with_answer(after)
    assert merged == DataPlaneFacts(
        credential="ci-bot",
        rule="payments",
        input_schema=schema,
        output_schema=answer_schema,
        findings=(IN, OUT),
    )


def test_an_answer_check_alone_is_kept_whole() -> None:
    after = DataPlaneFacts(rule="payments", findings=(OUT,))
    assert DataPlaneFacts().with_answer(after) == after
