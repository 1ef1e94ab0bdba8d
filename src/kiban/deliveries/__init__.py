"""Deliveries (``deliveries:`` in kiban.yml): a mart or recipe as a file, to a folder, an e-mail or a chat.

- :mod:`kiban.deliveries.write`  the file: xlsx with formatting, or CSV in UTF-8 with a BOM or CP932; every text
  cell formula-safe
- :mod:`kiban.deliveries.send`   read (masked, from the published snapshot), write, deliver with retries, record
"""
