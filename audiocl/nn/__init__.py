"""Networks: front ends (``features``), encoders ``(B, T, F) -> (B, D)`` with their registry
(``encoders``), projection heads and ensembles."""
