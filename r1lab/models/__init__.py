"""Models: load any causal LM by hub id or path; build tiny ones locally; prompt templates."""
