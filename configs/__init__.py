"""zoo's built-in recipes (YAML), registered through the ``recipes`` entry point like any plugin's."""
