"""One module per kind of source; see kiban.collect.connector for the contract."""
