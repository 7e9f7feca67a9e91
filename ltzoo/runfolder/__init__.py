"""The run folder floor: the folder's life (`folder`: lock, checkpoints, resume, log, export), its file names in
one place (`layout`), what a run ran on and from which code (`provenance`), the model files it holds (`model_io`:
create, load and save a timm model) and the kept predictions (`predictions`)."""


def __getattr__(name: str):
    """The names the old module ``ltzoo.runfolder`` held (now in `.folder` and `.provenance`), until 0.3.0."""
    import importlib
    import warnings

    for module in ("folder", "provenance"):
        mod = importlib.import_module(f"ltzoo.runfolder.{module}")
        if hasattr(mod, name):
            warnings.warn(
                f"ltzoo.runfolder.{name} moved to ltzoo.runfolder.{module}.{name} in ltzoo 0.2.0; the old path goes in "
                "0.3.0",
                DeprecationWarning,
                stacklevel=2,
            )
            return getattr(mod, name)
    raise AttributeError(f"module 'ltzoo.runfolder' has no attribute {name!r}")
