"""What is shown: the judgement of each pair, the rendered /metrics, the store."""
