"""Data: training corpora and their manifests (``corpus``), trial lists (``trials``), synthetic
voices (``synth``), augmentation (``augment``, ``noise_split``) and the training views
(``views``)."""
