"""A job queue with priorities and deadlines."""
