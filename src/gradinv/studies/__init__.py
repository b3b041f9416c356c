"""Studies that reproduce the measurements of the reference papers: a study file sweeps an ordinary
experiment over axes with repeats (:mod:`gradinv.studies.spec`), runs every trial through
:func:`gradinv.experiment.run_experiment` (:mod:`gradinv.studies.trial`) on a local, process-pool or
Ray executor (:mod:`gradinv.studies.executors`), keeps each finished trial in a crash-safe SQLite
store (:mod:`gradinv.studies.store`) and writes paper-style tables, plots, the privacy–utility
frontier (:mod:`gradinv.studies.tradeoff`) and one HTML page (:mod:`gradinv.studies.engine`).
``gradinv study`` and its alias ``gradinv frontier`` on the command line; the built-in studies are
:mod:`gradinv.studies.library`.
"""

from gradinv.studies.engine import StudyRun, report_study, run_study
from gradinv.studies.spec import StudySpec, load_study, parse_study

__all__ = ["StudyRun", "StudySpec", "load_study", "parse_study", "report_study", "run_study"]
