"""Task suites: the suite files' catalog, the bug registry, HumanEval and users' imported pipelines."""
