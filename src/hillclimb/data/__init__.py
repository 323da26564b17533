"""Clean, licensed pre-training data: sources → filters → dedup → documents + tokenized shards."""
