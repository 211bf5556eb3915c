"""Placeholders: timm's data pipeline names these at import; a ConvNeXt reference never calls them."""


class _Placeholder:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__}: the test shim of torchvision has no transforms")


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    return type(name, (_Placeholder,), {})
