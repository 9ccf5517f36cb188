"""Built-in splits, re-balancers and DDP-aware samplers of the seed systems."""
