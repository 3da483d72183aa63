"""What every layer speaks: Codat's contract, the snapshot, the metric families, time."""
