"""Client-side vetting: inspect the model a server sends before training on it.

Malicious-server attacks plant their machinery in the model: inserted imprint layers (Robbing the
Fed, Fowl et al., ICLR 2022), trap weights (Boenisch et al., EuroS&P 2023), zeroed or magnified
classifier rows (fishing, Wen et al., ICML 2022), or different models for different clients
(Pasquini et al., CCS 2022). Paper 003 (§IV-B) recommends that clients verify the architecture and
parameters they receive; :func:`vet` does that and returns a :class:`VetReport` of findings with
evidence. ``gradinv vet`` is the command line front end (exit code 0 clean, 1 findings, 2 bad input).

What it cannot see: a model crafted to look statistically honest (random-looking weights whose
effect only shows on data), attacks that need no model change (sybil clients, passive
eavesdroppers), and manipulation spread over many rounds in small steps. See
``docs/malicious_server_and_vetting.md``.
"""

from gradinv.vetting.api import ModelLike, vet
from gradinv.vetting.findings import Finding, Severity, VetReport
from gradinv.vetting.io import load_state

__all__ = ["Finding", "ModelLike", "Severity", "VetReport", "load_state", "vet"]
