"""The README stays true: self-contained, the two set-up commands first, the state-machine picture current."""
from __future__ import annotations

from infra import diagram


def test_readme_diagram_is_the_state_machine_definition():
    text = diagram.README.read_text(encoding="utf-8")
    assert diagram.readme_block(diagram.current_definition()) in text, "run: python -m infra.diagram --write"


def test_the_diagram_names_every_state():
    definition = diagram.current_definition()
    rendered = diagram.render_mermaid(definition)
    names = list(definition["States"])
    for state in definition["States"].values():
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            names += list(processor["States"])
    assert all(name in rendered for name in names)
    assert rendered.count(" --> ") + rendered.count(" .-> ") + rendered.count("-.->") >= len(definition["States"])


def test_readme_is_self_contained_and_starts_with_the_two_commands():
    text = diagram.README.read_text(encoding="utf-8")
    assert "../shared" not in text
    first_screen = "\n".join(text.splitlines()[:30])
    assert "make demo" in first_screen and "make test" in first_screen
