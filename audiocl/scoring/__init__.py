"""Scoring: cosine scores, AS-Norm and calibration records (``scores``), cohorts, metrics (EER,
minDCF, DET), evaluation of trial lists, plots and the operating points."""
