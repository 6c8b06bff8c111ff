"""Studies of the ntk thread: one module per study, each defining a module-level ``STUDY``."""
