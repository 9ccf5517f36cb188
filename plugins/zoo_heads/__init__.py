"""Built-in classification heads: ArcMarginProduct, sub-center ArcMarginProduct, linear."""
