"""Synthetic labelled abdominal CT phantoms: the training data source of the liver models.

``generate_case(seed, config=...)`` renders one case (CT, liver/tumour labels, organ map,
lesion truth, chronic liver disease stage, contrast phase and every drawn parameter).
"""

from training.phantoms.anatomy import TISSUE_NAMES, Tissue
from training.phantoms.disease import (
    STAGE_RANGES,
    LesionKind,
    LesionTruth,
    LiverStage,
    stage_from_features,
)
from training.phantoms.generator import (
    GENERATOR_VERSION,
    LESION_CONTRAST_HU,
    TISSUE_HU,
    ContrastPhase,
    PhantomCase,
    PhantomConfig,
    generate_case,
)

__all__ = [
    "GENERATOR_VERSION",
    "LESION_CONTRAST_HU",
    "STAGE_RANGES",
    "TISSUE_HU",
    "TISSUE_NAMES",
    "ContrastPhase",
    "LesionKind",
    "LesionTruth",
    "LiverStage",
    "PhantomCase",
    "PhantomConfig",
    "Tissue",
    "generate_case",
    "stage_from_features",
]
