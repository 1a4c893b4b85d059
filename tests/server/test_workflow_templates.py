"""Templates in step configs: rendered in Jinja2's sandbox, native values for lone expressions,
references found in the syntax tree, and the ways out of the sandbox refused."""

from __future__ import annotations

from typing import Any

import pytest

from server.core.workflows import templates
from server.core.workflows.templates import TemplateProblem

CONTEXT: dict[str, Any] = {
    "input": {"name": "Ada", "amount": 150, "tags": ["a", "b"], "items": ["x"]},
    "steps": {"fetch": {"output": {"id": 42, "json": {"user": {"login": "ada"}}, "items": [1, 2]}}},
}


def test_text_with_expressions_renders_to_text() -> None:
    assert (
        templates.render("Hello {{ input.name }}, #{{ steps.fetch.output.id }}", CONTEXT) == "Hello Ada, #42"
    )


def test_a_lone_expression_renders_to_its_native_value() -> None:
    config = {
        "id": "{{ steps.fetch.output.id }}",
        "user": "{{ steps.fetch.output.json.user }}",
        "tags": ["{{ input.tags }}", "{{ input.tags | length }}"],
        "spaced": "{{input.amount > 100}}",
        "plain": "no templates here",
        "number": 7,
    }
    assert templates.render(config, CONTEXT) == {
        "id": 42,
        "user": {"login": "ada"},
        "tags": [["a", "b"], 2],
        "spaced": True,
        "plain": "no templates here",
        "number": 7,
    }


def test_text_around_an_expression_keeps_it_text() -> None:
    assert templates.render(" {{ steps.fetch.output.id }}", CONTEXT) == " 42"
    assert templates.render("{{ input.amount }}{{ input.amount }}", CONTEXT) == "150150"


def test_dict_keys_win_over_dict_methods() -> None:
    assert templates.render("{{ input.items }}", CONTEXT) == ["x"]
    assert templates.render("{{ steps['fetch'].output['items'] }}", CONTEXT) == [1, 2]


def test_filters_and_safe_methods_work() -> None:
    assert templates.render("{{ input.name | upper }}-{{ input.tags | join(',') }}", CONTEXT) == "ADA-a,b"
    assert templates.render("{{ input.name.lower() }}", CONTEXT) == "ada"
    assert templates.render("{{ input.missing | default('none') }}", CONTEXT) == "none"
    assert templates.render("{{ input | tojson }}", {"input": {"a": 1}}) == '{"a": 1}'


def test_an_undefined_name_fails_naming_where() -> None:
    with pytest.raises(TemplateProblem) as caught:
        templates.render({"body": {"text": "{{ input.nmae }}"}}, CONTEXT, "step 'notify' (2)", "config")
    assert caught.value.message.startswith("step 'notify' (2): config.body.text: undefined")
    assert caught.value.path == "config.body.text"


def test_references_are_found_in_the_syntax_tree() -> None:
    config = {
        "a": "{{ steps.fetch.output.id }} and {{ steps['other'].output }}",
        "b": ["{{ (steps.third.output.items | first) if input.amount else 0 }}"],
        "c": "{{ input.name }} mentions steps.fake in text",
        "d": "{{ steps.fetch }}",
    }
    assert templates.references(config) == {"fetch", "other", "third"}


def test_a_computed_step_name_is_refused() -> None:
    with pytest.raises(TemplateProblem, match="must name a step"):
        templates.references({"x": "{{ steps[input.name].output }}"})


@pytest.mark.parametrize(
    ("source", "why"),
    [
        ("{{ inptu.name }}", "unknown name 'inptu' (did you mean 'input'?)"),
        ("{{ input.name | uper }}", "unknown filter 'uper' (did you mean 'upper'?)"),
        ("{% for i in range(3) %}x{% endfor %}", "not {% statements %}"),
        ("{% set x = 1 %}", "not {% statements %}"),
        ("{{ input.name ~ 'x' }}", "~ is not available"),
        ("{{ input.name", "template syntax error"),
        ("{{ self }}", "unknown name 'self'"),
        ("{{ lipsum(5) }}", "unknown name 'lipsum'"),
    ],
)
def test_templates_that_cannot_be_used_are_refused_before_running(source: str, why: str) -> None:
    with pytest.raises(TemplateProblem) as caught:
        templates.references({"x": source}, "step 's' (1)")
    assert why in caught.value.message
    assert caught.value.message.startswith("step 's' (1): x: ")


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ input.__class__ }}",
        "{{ input['__class__'] }}",
        "{{ input.name.__class__.__base__.__subclasses__() }}",
        "{{ input.name.format }}",
        "{{ input.name.center(1000000000) }}",
        "{{ range.__globals__ }}",
        "{{ dict.__init__ }}",
        "{{ input | attr('__class__') }}",
        "{{ input.name | center(1000000000) }}",
        "{{ '%999999999s' % 'x' }}",
    ],
)
def test_sandbox_escapes_are_refused(source: str) -> None:
    with pytest.raises(TemplateProblem):
        templates.render(source, CONTEXT)


@pytest.mark.parametrize(
    "source",
    [
        "{{ range(1000000000) | list }}",
        "{{ range(100000) | length }}",
        "{{ 'a' * 1000000000 }}",
        "{{ [1] * 1000000000 }}",
        "{{ (input.tags * 5000) * 5000 }}",
        "{{ 2 ** 100000 }}",
        "{{ 10 ** (10 ** 10) }}",
        "{{ ('a' * 100000) | replace('a', 'a' * 100000) }}",
        "{{ range(10000) | join('a' * 10000) }}",
        "{{ ('a' * 1000000) + ('a' * 1000000) }}",
        "{{ [('a' * 100000)] * 1000 | sum(start='') }}",
    ],
)
def test_huge_values_are_refused(source: str) -> None:
    with pytest.raises(TemplateProblem, match=r"sandbox|template error"):
        templates.render(source, CONTEXT)


def test_rendered_text_is_bounded() -> None:
    big = {"input": {"text": "x" * 600_000}}
    with pytest.raises(TemplateProblem, match="rendered text longer"):
        templates.render("{{ input.text }} {{ input.text }}", big)


def test_conditions_evaluate_bare_or_wrapped_expressions() -> None:
    assert templates.evaluate("input.amount > 100", CONTEXT) is True
    assert templates.evaluate("{{ input.amount > 1000 }}", CONTEXT) is False
    assert templates.evaluate("steps.fetch.output.id == 42 and 'a' in input.tags", CONTEXT) is True
    with pytest.raises(TemplateProblem, match="one expression"):
        templates.evaluate("{{ input.amount }} > {{ 1 }}", CONTEXT)
    with pytest.raises(TemplateProblem, match="undefined"):
        templates.evaluate("input.nope > 1", CONTEXT)
