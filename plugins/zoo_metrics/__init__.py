"""Built-in metrics: GAP, mAP@k, mP@k, recall@k."""
