"""Client-side defenses. Importing this package registers every defense in :data:`DEFENSES`
(each module of the package is imported; defense modules register themselves).

The package exports the API of :mod:`gradinv.defenses.base` (the protocol, the registry, the chain
and the helpers for defense authors). See ``docs/defenses.md`` for the catalogue, the stage of each
defense and how they compose."""

import sys as _sys

from gradinv._discovery import import_submodules as _import_submodules
from gradinv.defenses.base import *  # noqa: F403  (the package's API is base's __all__)
from gradinv.defenses.base import __all__ as __all__

_import_submodules(_sys.modules[__name__])
