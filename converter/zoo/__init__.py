"""The five published systems this product was designed from, rebuilt as baselines.

Each seed is a feature recipe (through edge.features, like everything else here) plus a network. The zoo
trains them on the same speaker-independent folds as our compact models (converter.dataset.speaker_folds,
seed 0: RAVDESS actors held out, TESS always in training), once on a random 80/20 split for comparison with
the papers (labelled: speakers are shared), tries full-int8 conversion, and times each model file with the
edge interpreter in a separate process (no TensorFlow there).

Unit of evaluation: one utterance = one input, as in the papers (our device model is scored per clip the
same way: mean of its windows, `int8_clip` in docs/cv-dscnn.json).

Modules: `features` (each paper's input recipe), `networks` (each paper's network and the SEEDS
registry), `data` (features of every utterance, cached), `convert` (MACs, float and int8 conversion,
latency with the edge interpreter), `training` (training and scoring on the folds), `report` (the markdown table).
"""

from .networks import SEEDS, Seed
from .report import our_model_on_same_folds, report_markdown
from .training import ZooSettings, evaluate_seed, run

__all__ = ["SEEDS", "Seed", "ZooSettings", "evaluate_seed", "our_model_on_same_folds", "report_markdown", "run"]
