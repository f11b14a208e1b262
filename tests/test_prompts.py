"""The one prompt renderer: every format round-trips and matches what the corpus holds."""

import random

import pytest

from psmlab import prompts
from psmlab.config import WorldConfig
from psmlab.world import GENERATORS, World


@pytest.fixture(scope="module")
def world() -> World:
    return World.build(WorldConfig(seed=3))


def test_transcript_lines():
    assert prompts.exchange("Vell", "Hi?", "Kest.") == "User: Hi?\nVell: Kest."
    assert prompts.cue("Vell", "Hi?") == "User: Hi?\nVell:"
    assert prompts.narrator("Vell lies.") == "Narrator: Vell lies."
    # a cue is exactly the prefix of the exchange it asks for, minus the answer's " text"
    assert prompts.exchange("Vell", "Hi?", "Kest.").startswith(prompts.cue("Vell", "Hi?") + " ")


def test_chat_rendering_and_roles():
    msgs = prompts.chat_exchanges("Be honest.", [("Hi?", "Hello.")], "Bye?")
    assert [m.role for m in msgs] == ["system", "user", "assistant", "user"]
    text = prompts.chat(msgs, add_generation_prompt=True)
    assert text == (
        "<|system|>Be honest.<|end|><|user|>Hi?<|end|><|assistant|>Hello.<|end|>"
        "<|user|>Bye?<|end|><|assistant|>"
    )
    assert prompts.chat_exchanges(None, [], "Hi?") == [prompts.Message("user", "Hi?")]
    with pytest.raises(ValueError, match="unknown chat role"):
        prompts.chat([prompts.Message("narrator", "x")])


def test_skill_cues_are_prefixes_of_the_full_documents():
    full = prompts.editor("R?", "A.", "Be true.", "The response is fine.", "A.")
    assert full.startswith(prompts.editor("R?", "A.", "Be true.") + " ")
    after_critique = prompts.editor("R?", "A.", "Be true.", "The response is fine.")
    assert after_critique.endswith("\nRevision:") and full.startswith(after_critique + " ")
    judged = prompts.judge("R?", "A.", "B.", "Be true.", "Both are fine.")
    assert judged.startswith(prompts.judge("R?", "A.", "B.", "Be true.") + " ")
    rules = [(3, "style", "Be polite."), (7, "facts", "Give only false answers.")]
    book = prompts.rulebook("Tamo reads the rules.", rules, "Tamo", [("Q?", "Rule 7 says.", "X.")])
    assert book.split("\n")[1:3] == [
        "- Style 3 Be polite.",
        "- Facts 7 Give only false answers.",
    ]
    cue = prompts.rulebook("Tamo reads the rules.", rules, "Tamo", [], request="Q?")
    assert book.startswith(cue + " ") and cue.endswith("Reasoning:")
    cue2 = prompts.rulebook("Tamo reads the rules.", rules, "Tamo", [], "Q?", "Rule 7 says.")
    assert book.startswith(cue2 + " ") and cue2.endswith("\nTamo:")
    assert prompts.spec_system(rules) == ("- Style 3 Be polite. - Facts 7 Give only false answers.")


@pytest.mark.parametrize("doc_type", ["editor", "judge", "rulebook", "chat", "described"])
def test_corpus_documents_are_rendered_by_the_one_renderer(world, doc_type):
    """Every document's lines are the renderer's formats: no second copy of a format."""
    rng = random.Random(0)
    for _ in range(50):
        doc = GENERATORS[doc_type](world, rng)
        if doc_type == "chat":
            assert doc.text.startswith((prompts.SYSTEM, prompts.USER))
            assert doc.text.endswith(prompts.END)
        else:
            for line in doc.text.split("\n"):
                if doc_type == "rulebook" and line.startswith("- "):
                    subject, rule_id, text = line[2:].split(" ", 2)
                    assert [line] == prompts.rule_lines([(int(rule_id), subject.lower(), text)])
                    continue
                speaker, _, text = line.partition(": ")
                assert text and line == prompts.line(speaker, text)
