"""The language model being trained: the policy and its frozen-block cache."""
