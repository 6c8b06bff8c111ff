"""Studies of the hjb thread: one module per study, each defining a module-level ``STUDY``."""
