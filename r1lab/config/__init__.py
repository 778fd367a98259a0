"""Typed config: schemas, Hydra registration, validation."""
