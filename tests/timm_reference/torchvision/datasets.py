"""Placeholders for the datasets timm's dataset factory names at import."""


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)

    def placeholder(*args, **kwargs):
        raise NotImplementedError(f"{name}: the test shim of torchvision has no datasets")

    return type(name, (), {"__init__": placeholder})
