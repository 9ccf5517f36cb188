"""Built-in albumentations pipelines of the seed systems."""
