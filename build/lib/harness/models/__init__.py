"""Model adapters: a registry, and one module per model family."""
