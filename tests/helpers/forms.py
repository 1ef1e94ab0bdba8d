"""A form for the daily waste count, landing in forms.waste (shared by the form tests)."""

WASTE_FILES = {
    "sources/forms.yml": """
type: files
tables:
  waste:
    path: landing/forms/waste/*.parquet
    settle: 0s
""",
    "forms/waste.yml": """
title: Daily waste count
lands_in: forms.waste
who: [analyst, tanaka]
fields:
  - {name: store_id, type: integer, required: true, min: 1, max: 999, label: Store}
  - {name: day, type: date}
  - {name: item, type: text, required: true, allowed: [bread, milk, vegetables, other]}
  - {name: quantity, type: integer, required: true, min: 0, max: 10000}
  - {name: note, type: text, max_length: 20}
""",
}
