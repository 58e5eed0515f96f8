"""The algorithms, one file each; all subclass `OfflineRLModule`.

Every module of this package is imported here, so each algorithm is registered with LightningCLI by its
class name (`--model CQL`) and importable as `lit_offrl.algos.CQL`.
"""

import importlib
import pkgutil

from lit_offrl.algos.base import OfflineRLModule

__all__ = ["OfflineRLModule"]

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
    if _info.name.startswith("_") or _info.name == "base":
        continue
    _module = importlib.import_module(f"{__name__}.{_info.name}")
    for _name, _value in vars(_module).items():
        if (isinstance(_value, type) and issubclass(_value, OfflineRLModule) and _value.__module__ == _module.__name__
                and not _name.startswith("_")):
            globals()[_name] = _value
            __all__.append(_name)
