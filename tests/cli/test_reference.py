"""The README's reference tables are what the code says (``make docs`` regenerates them)."""

from __future__ import annotations

from pathlib import Path

from revocast.reference import BEGIN, END, main, render
from schemas import TopicNames
from schemas.topics import DLQ_REASON_HEADER

REPO = Path(__file__).resolve().parents[2]


def test_readme_reference_is_current() -> None:
    assert main(["--readme", str(REPO / "README.md"), "--check"]) == 0, (
        "README.md's reference tables differ from the code: run `make docs`"
    )


def test_a_drifted_copy_is_caught_and_rewritten(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    text = (REPO / "README.md").read_text()
    start = text.index(BEGIN)
    readme.write_text(text[:start] + text[start:].replace("`unknown_key`", "`untrusted_key`", 1))
    assert main(["--readme", str(readme), "--check"]) == 1
    assert main(["--readme", str(readme)]) == 0
    assert readme.read_text() == text


def test_the_tables_name_what_the_code_names() -> None:
    section = render()
    assert section.startswith(BEGIN)
    assert section.endswith(END)
    names = TopicNames()
    for name in (names.events, names.receipts, names.dead_letter, DLQ_REASON_HEADER):
        assert f"`{name}`" in section
    for reason in ("unknown_key", "bad_signature", "undecodable", "schema_invalid"):
        assert f"`{reason}`" in section
    for field in ("event_id", "applied_at_ns", "partition", "offset"):
        assert f"`{field}`" in section


def test_the_tables_do_not_depend_on_what_else_is_imported() -> None:
    # The SSF receiver refuses SETs with its own InvalidEventError kind; it never writes a
    # dead letter, so importing it must not change the dead-letter reasons table.
    before = render()
    import producer.ingress.ssf.exceptions  # noqa: F401

    assert render() == before
