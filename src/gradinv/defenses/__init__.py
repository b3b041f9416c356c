"""Client-side defenses. Importing this package registers every defense in :data:`DEFENSES`
(each module of the package is imported; defense modules register themselves).

See ``docs/defenses.md`` for the catalogue, the stage of each defense and how they compose."""

import sys as _sys

from gradinv._discovery import import_submodules as _import_submodules
from gradinv.defenses.base import (
    DEFENSES,
    Defense,
    DefenseChain,
    DefenseConfig,
    RegularizedModule,
    UpdateDefense,
    auxiliary_loss,
    create_defense,
    map_update,
    register_defense,
)

_import_submodules(_sys.modules[__name__])

__all__ = [
    "DEFENSES",
    "Defense",
    "DefenseChain",
    "DefenseConfig",
    "RegularizedModule",
    "UpdateDefense",
    "auxiliary_loss",
    "create_defense",
    "map_update",
    "register_defense",
]
