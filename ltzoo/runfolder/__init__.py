"""The run folder floor: the folder's life (`folder`: lock, checkpoints, resume, log, export), its file names in
one place (`layout`), what a run ran on and from which code (`provenance`), the model files it holds (`model_io`:
create, load and save a timm model) and the kept predictions (`predictions`)."""
