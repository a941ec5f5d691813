"""Training: recipes checked against the registries (``recipe``), the stage runner (``stages``),
the trainer of one stage (``trainer``), pseudo-labels, clustering and the allocator setting."""
