"""Bringing other toolkits' published speaker models into audiocl model files.

``IMPORTERS[name](path) -> payload`` reads a model folder in the layout its toolkit publishes
(Resemblyzer: its ``pretrained.pt``, or a folder holding it) and returns the payload of an audiocl ``model.pt`` (``checkpoint.make_model_file`` plus
``source``, ``name``, ``license`` and, where the source has one, its original config), so that an imported model works
everywhere a trained one does. Each importer checks every tensor's shape and names what does
not fit (``ModelError``, exit 4).
"""

from __future__ import annotations

from .resemblyzer import import_resemblyzer
from .speechbrain import import_speechbrain
from .wespeaker import import_wespeaker

# toolkit -> importer (plain registry; the module of each toolkit owns its mapping)
IMPORTERS = {
    "speechbrain": import_speechbrain,
    "wespeaker": import_wespeaker,
    "resemblyzer": import_resemblyzer,
}
