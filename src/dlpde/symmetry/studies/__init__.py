"""Studies of the symmetry thread: one module per study, each defining a module-level ``STUDY``."""
