"""Built-in converters from the upstream checkpoint layouts to zoo's modules."""
