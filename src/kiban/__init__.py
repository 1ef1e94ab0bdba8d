"""kiban (基盤): a DataOps platform whose service levels come from use cases."""

__version__ = "0.1.0"
