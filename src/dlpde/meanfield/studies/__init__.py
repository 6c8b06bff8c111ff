"""Studies of the meanfield thread: one module per study, each defining a module-level ``STUDY``."""
