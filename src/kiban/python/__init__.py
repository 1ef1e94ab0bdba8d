"""Python models: functions declared with ``@kiban.asset`` / ``@kiban.train`` / ``@kiban.score``."""

from kiban.python.spec import PythonInput, PythonSpec, discover

__all__ = ["PythonInput", "PythonSpec", "discover"]
