"""One module per backend; `bus.registry` imports the chosen one lazily."""
