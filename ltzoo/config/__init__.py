"""The config floor, a leaf: flag value types (`argtypes`) and the record of what a run decided from its data
and starting point (`resolution`), kept apart from the parsed flags, which are never changed."""
