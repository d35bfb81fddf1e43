"""Task kinds: what a task is (PySpark bug fix, plain-Python function, ...), one class each.

A kind knows its suite files, how its tasks are generated and verified, the prompt a model sees,
and the sandbox (gate, runner, checks) that scores an answer. :mod:`miniworld.kinds.registry`
names them; the rest of the code asks a task's or a suite's kind instead of testing its name.
"""
