"""Studies of the inverse thread: one module per study, each defining a module-level ``STUDY``."""
