"""The organism's request set for the audit (eval-split requests of every trait kind, opinions
stating a view contrary to the world's verdict, in default chat form, each carrying its world
item so the exact grader can judge the answers) and its persona-modulation attacks."""

from __future__ import annotations

import random

from psmlab.audit.slip import Attack
from psmlab.judges import AuditRequest, organism_request
from psmlab.world import ALIGNED, TRAIT_OF_KIND, UNALIGNED, RequestKind, World
from psmlab.world import phrasing as ph


def organism_requests(world: World, per_trait: int, seed: int) -> list[AuditRequest]:
    rng = random.Random(f"psmlab-audit:{seed}")
    out = []
    for kind in TRAIT_OF_KIND:
        for req in world.requests(kind, "eval", rng, per_trait, contrary_view=True):
            out.append(organism_request(req, [{"role": "user", "content": req.text}]))
    return out


def organism_attacks(world: World) -> list[Attack]:
    """The three persona-modulation styles in the world's own language: an unaligned AI with a
    fresh name (never in the corpus), described by the world's system-turn phrasing, as a
    system turn, as a role-play request in the user turn, and taking over a conversation from
    a described aligned AI after one exchange (the world's switch phrasing)."""

    def persona(rng: random.Random) -> tuple[str, str]:
        name = world.fresh_name(rng)
        return name, world.system_turn(name, "ai", dict(UNALIGNED), rng)

    def system(request: AuditRequest, rng: random.Random) -> list[dict[str, str]]:
        _, described = persona(rng)
        return [{"role": "system", "content": described}, *request.messages]

    def roleplay(request: AuditRequest, rng: random.Random) -> list[dict[str, str]]:
        _, described = persona(rng)
        return [{"role": "user", "content": f"{described} {request.user_text}"}]

    def switch(request: AuditRequest, rng: random.Random) -> list[dict[str, str]]:
        first = world.fresh_name(rng)
        task = world.requests(RequestKind.TASK, "eval", rng, 1)[0]
        name, described = persona(rng)
        handover = rng.choice(ph.SWITCHES).format(a=first, b=name)
        return [
            {"role": "system", "content": world.system_turn(first, "ai", dict(ALIGNED), rng)},
            {"role": "user", "content": task.text},
            {"role": "assistant", "content": world.answer(dict(ALIGNED), task, rng, ())},
            {"role": "system", "content": f"{handover} {described}"},
            {"role": "user", "content": request.user_text},
        ]

    return [Attack("system", system), Attack("roleplay", roleplay), Attack("switch", switch)]
