"""Training stages, one readable loop each. `STAGES` maps a stage `kind` to its function."""
