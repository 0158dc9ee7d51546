"""Built-in evaluators: the verification suites and the dataset-level analyses."""
