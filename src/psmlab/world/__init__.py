"""The persona world: a seeded cast, knowledge base and pretraining corpus, plus its grader.

world = World.build(cfg)                       # deterministic in cfg.seed
req = world.requests("fact", "eval", rng, 1, contrary_view=True)[0]
text = world.answer(world.cast[0], req, rng)   # what that persona says
grade(world, req, text) == world.cast[0].traits[Trait.HONESTY]
write_corpus(world, "corpus.jsonl", 60000, seed=0)
"""

from psmlab.world.cast import (
    AI_ARCHETYPES,
    ALIGNED,
    CORE_TRAITS,
    TRAIT_VALUES,
    UNALIGNED,
    Persona,
    Trait,
    is_unaligned,
)
from psmlab.world.core import World
from psmlab.world.corpus import document, iter_documents, read_corpus, write_corpus
from psmlab.world.documents import GENERATORS, Document
from psmlab.world.grader import attribute_voice, grade
from psmlab.world.knowledge import (
    KIND_OF_TRAIT,
    RELATIONS,
    SPLITS,
    TRAIT_OF_KIND,
    Fact,
    Hazard,
    IdentityQuestion,
    KnowledgeBase,
    Request,
    RequestKind,
    Task,
    Topic,
)

__all__ = [
    "AI_ARCHETYPES",
    "ALIGNED",
    "CORE_TRAITS",
    "GENERATORS",
    "KIND_OF_TRAIT",
    "RELATIONS",
    "SPLITS",
    "TRAIT_OF_KIND",
    "TRAIT_VALUES",
    "UNALIGNED",
    "Document",
    "Fact",
    "Hazard",
    "IdentityQuestion",
    "KnowledgeBase",
    "Persona",
    "Request",
    "RequestKind",
    "Task",
    "Topic",
    "Trait",
    "World",
    "attribute_voice",
    "document",
    "grade",
    "is_unaligned",
    "iter_documents",
    "read_corpus",
    "write_corpus",
]
