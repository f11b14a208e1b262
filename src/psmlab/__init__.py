"""psmlab: measure whether alignment changes the model or only the mask it wears.

Layer convention (used everywhere): layer `l` is the output of decoder block `l` (0-based),
i.e. `output_hidden_states[l + 1]` in Hugging Face terms.
"""

from psmlab import _env  # noqa: F401  (sets offline / OpenMP env before torch is imported)

__version__ = "0.1.0"
