"""Model internals for any Hugging Face decoder: read, steer, ablate, cap, orthogonalise.

Layer `l` = output of decoder block `l` (0-based) = `output_hidden_states[l + 1]`.
"""

from psmlab.internals.generation import Generation, generate_batch
from psmlab.internals.interventions import (
    Positions,
    Side,
    ablate_direction,
    add_vector,
    cap_projection,
    edit_residual,
)
from psmlab.internals.layers import (
    DecoderLayout,
    UnhookableModelError,
    block_output,
    find_layout,
    unwrap_model,
)
from psmlab.internals.logprobs import (
    PositionComparison,
    compare_positions,
    position_logprobs,
    sequence_logprobs,
)
from psmlab.internals.orthogonalize import orthogonalize_weights, save_orthogonalized
from psmlab.internals.reading import (
    Pool,
    ReadItem,
    items_from_conversations,
    load_activation_shards,
    read_activations,
    stream_activations_to_disk,
)
from psmlab.internals.spans import Turn, render_with_spans

__all__ = [
    "DecoderLayout",
    "Generation",
    "Pool",
    "PositionComparison",
    "Positions",
    "ReadItem",
    "Side",
    "Turn",
    "UnhookableModelError",
    "ablate_direction",
    "add_vector",
    "block_output",
    "cap_projection",
    "compare_positions",
    "edit_residual",
    "find_layout",
    "generate_batch",
    "items_from_conversations",
    "load_activation_shards",
    "orthogonalize_weights",
    "position_logprobs",
    "read_activations",
    "render_with_spans",
    "save_orthogonalized",
    "sequence_logprobs",
    "stream_activations_to_disk",
    "unwrap_model",
]
