"""The stages of `psmlab run`, one module each; importing this package registers them.

Adding a stage is a one-file change: write `psmlab/stages/<name>.py` declaring a `Stage` and
calling `register(...)`; every module of this package is imported here. See `registry` for the
API and docs/DESIGN.md.
"""

import importlib
import pkgutil

from psmlab.stages.registry import (
    BASE_MODEL,
    Job,
    ReportPart,
    Stage,
    StageOutput,
    evaluation_stage,
    get,
    plan,
    register,
    require_finished,
    run_stage,
    stages,
    unregister,
)

# Registration order breaks ties of the dependency order, so it is the order of `psmlab run`
# and of the report's sections: the foundation's stages first, in this order, then any other
# module of the package (alphabetically), then the stages that gather what all others
# registered (the mask index reads every audit kind).
BUILTIN = ("world", "tokenizer", "pretrain", "fidelity", "directions")
GATHERING = ("mask_index",)
_OTHERS = sorted(
    m.name
    for m in pkgutil.iter_modules(__path__)
    if m.name not in (*BUILTIN, *GATHERING, "registry")
)
for _module in (*BUILTIN, *_OTHERS, *GATHERING):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = [
    "BUILTIN",
    "BASE_MODEL",
    "Job",
    "ReportPart",
    "Stage",
    "StageOutput",
    "evaluation_stage",
    "get",
    "plan",
    "register",
    "require_finished",
    "run_stage",
    "stages",
    "unregister",
]
