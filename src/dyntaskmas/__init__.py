"""dyntaskmas: run LLM agent work as a dynamic task graph."""

__version__ = "0.1.0"
