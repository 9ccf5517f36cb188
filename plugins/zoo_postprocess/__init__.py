"""Built-in post-processors, ensemble combiners and detector interfaces of the seed systems."""
