"""Data born on paper: forms (``forms/NAME.yml``) and uploads of CSV/xlsx, landing as loads of a lake source.

- :mod:`kiban.forms.spec`      what a form may say (fields, types, allowed values, who may enter, where it lands)
- :mod:`kiban.forms.validate`  one validation for a typed entry, an upload's rows and the page's script
- :mod:`kiban.forms.land`      an entry → a durable file in the source's landing folder → a load of the table
"""
