"""Inference: the embedder (``embed``), embedding caches and files, domain adaptation
(``adapt``) and the SQLite speaker store (``store``)."""
