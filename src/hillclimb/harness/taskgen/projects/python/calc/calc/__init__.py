"""An arithmetic expression evaluator."""
