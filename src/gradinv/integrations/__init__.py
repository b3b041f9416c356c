"""Integrations with federated-learning frameworks, at the edge of the package.

Each integration translates a framework's messages into gradinv's typed core
(:class:`~gradinv.types.ModelUpdate`, :class:`~gradinv.types.GroundTruth`) and calls the one
attack-and-score stage (:func:`gradinv.pipeline.attack_and_score`); nothing inside the core knows
a framework exists. Each needs its optional extra:

* :mod:`gradinv.integrations.flower` — Flower (``pip install 'gradinv[flower]'``).
"""
