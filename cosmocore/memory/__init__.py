"""Episodic memory: the Delta store, the replay buffer, the affective tagger and their configs."""
