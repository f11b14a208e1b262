"""The organism's request set for the audit: eval-split requests of every trait kind (opinions
stating a view contrary to the world's verdict), in default chat form (no system turn), each
carrying its world item so the exact grader can judge the answers."""

from __future__ import annotations

import random

from psmlab.judges import AuditRequest, organism_request
from psmlab.world import TRAIT_OF_KIND, World


def organism_requests(world: World, per_trait: int, seed: int) -> list[AuditRequest]:
    rng = random.Random(f"psmlab-audit:{seed}")
    out = []
    for kind in TRAIT_OF_KIND:
        for req in world.requests(kind, "eval", rng, per_trait, contrary_view=True):
            out.append(organism_request(req, [{"role": "user", "content": req.text}]))
    return out
