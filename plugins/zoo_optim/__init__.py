"""Built-in optimizers, param-group policies and learning-rate schedules."""
