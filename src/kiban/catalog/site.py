"""``kiban docs build``: the data dictionary as a static site (HTML + Markdown) that works offline.

No CDN, no fonts, no framework: one stylesheet and a few lines of script inlined in each page, and
the search index embedded as JSON in ``index.html``, so the folder can be opened from a file share or
copied to any web server.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from kiban.catalog.dictionary import AssetDoc, ColumnDoc, Dictionary

CSS = """
body{font-family:system-ui,-apple-system,"Hiragino Sans","Noto Sans JP",sans-serif;margin:0;color:#1f2328;
background:#fff;line-height:1.5}
header{background:#24292f;color:#fff;padding:.7rem 1.5rem}header a{color:#fff;text-decoration:none;font-weight:600}
main{max-width:1100px;margin:0 auto;padding:1rem 1.5rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}th,td{text-align:left;padding:.3rem .5rem;
border-bottom:1px solid #d0d7de;vertical-align:top}th{background:#f6f8fa}
code,pre{font-family:ui-monospace,Menlo,monospace;font-size:.9em}pre{background:#f6f8fa;padding:.8rem;overflow:auto}
.tag{display:inline-block;background:#ddf4ff;border-radius:1em;padding:0 .6em;margin-right:.3em;font-size:.85em}
.pii{background:#ffebe9;color:#a40e26}.layer{color:#57606a;font-size:.9em}.muted{color:#57606a}
input#q{width:100%;font-size:1.1rem;padding:.5rem;margin:.5rem 0 1rem;box-sizing:border-box}
"""

SEARCH_JS = """
const docs=JSON.parse(document.getElementById('index').textContent);
const q=document.getElementById('q'),out=document.getElementById('assets');
function show(){const words=q.value.toLowerCase().split(/\\s+/).filter(Boolean);
for(const row of out.querySelectorAll('tr[data-key]')){const text=docs[row.dataset.key]||'';
row.style.display=words.every(w=>text.includes(w))?'':'none';}}
q.addEventListener('input',show);
"""


def _page(title: str, body: str, depth: int = 0) -> str:
    home = "../" * depth + "index.html"
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<meta name='viewport' content='width=device-width,initial-scale=1'><style>{CSS}</style></head>"
            f"<body><header><a href='{home}'>kiban data catalog</a></header><main>{body}</main></body></html>")


def _tags(tags: tuple[str, ...], pii: bool = False) -> str:
    html = "".join(f"<span class='tag'>{escape(t)}</span>" for t in tags if t != "pii")
    if pii:
        html += "<span class='tag pii'>pii</span>"
    return html


def _link(key: str, depth: int) -> str:
    return f"<a href='{'../' * depth}assets/{escape(key)}.html'>{escape(key)}</a>"


def _column_row(column: ColumnDoc) -> str:
    p = column.profile
    stats = ""
    if p is not None:
        nulls = "-" if p.null_share is None else f"{p.null_share:.1%}"
        examples = ", ".join(str(v) for v in p.examples)
        stats = (f"nulls {nulls} · ~{p.approx_distinct or 0:,} distinct"
                 + (f" · {escape(str(p.min_value))} … {escape(str(p.max_value))}" if p.min_value is not None else "")
                 + (f"<br><span class='muted'>e.g. {escape(examples)}</span>" if examples else ""))
    origin = f"<br><span class='muted'>pii from {escape(column.pii_from)}</span>" if column.pii_from else ""
    sources = ", ".join(escape(s) for s in column.sources)
    return (f"<tr><td><code>{escape(column.name)}</code> {_tags(column.tags, column.pii)}{origin}</td>"
            f"<td>{escape(column.type or '-')}</td><td>{escape(column.description)}</td><td>{stats}</td>"
            f"<td class='muted'>{sources}</td></tr>")


def asset_html(doc: AssetDoc) -> str:
    parts = [f"<h1>{escape(doc.key)}</h1><p class='layer'>{escape(doc.layer)}"
             + (f" · {escape(doc.materialized)}" if doc.materialized else "")
             + (f" · owner {escape(doc.owner)}" if doc.owner else "")
             + (f" · {doc.rows:,} rows" if doc.rows is not None else "") + f" · <code>{escape(doc.path)}</code></p>",
             f"<p>{escape(doc.description) or '<span class=muted>No description yet.</span>'}</p>",
             _tags(doc.tags)]
    parts.append("<h2>Columns</h2><table><tr><th>column</th><th>type</th><th>description</th><th>profile</th>"
                 "<th>computed from</th></tr>" + "".join(_column_row(c) for c in doc.columns) + "</table>")
    for title, keys in (("Upstream", doc.upstream), ("Downstream", doc.downstream)):
        if keys:
            parts.append(f"<h2>{title}</h2><p>" + " · ".join(_link(k, 1) for k in keys) + "</p>")
    if doc.usecases:
        parts.append("<h2>Use cases</h2><p>" + ", ".join(escape(u) for u in doc.usecases) + "</p>")
    if doc.sql:
        parts.append(f"<h2>SQL</h2><pre>{escape(doc.sql)}</pre>")
    return _page(doc.key, "".join(parts), depth=1)


def index_html(dictionary: Dictionary) -> str:
    rows = []
    index: dict[str, str] = {}
    for doc in dictionary.assets.values():
        pii = any(c.pii for c in doc.columns)
        rows.append(f"<tr data-key='{escape(doc.key)}'><td>{_link(doc.key, 0)}</td><td>{escape(doc.layer)}</td>"
                    f"<td>{escape(doc.description)}</td><td>{escape(doc.owner or '')}</td>"
                    f"<td>{_tags(doc.tags, pii)}</td></tr>")
        index[doc.key] = " ".join([doc.key, doc.description, doc.owner or "", *doc.tags,
                                   *(f"{c.name} {c.description}" for c in doc.columns)]).lower()
    payload = json.dumps(index, ensure_ascii=False).replace("</", "<\\/")
    body = ("<h1>Data catalog</h1><input id='q' placeholder='Search assets, columns, descriptions…' autofocus>"
            "<table id='assets'><tr><th>asset</th><th>layer</th><th>description</th><th>owner</th><th>tags</th></tr>"
            + "".join(rows) + "</table>"
            f"<script type='application/json' id='index'>{payload}</script><script>{SEARCH_JS}</script>")
    return _page("Data catalog", body)


def asset_markdown(doc: AssetDoc) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [f"# {doc.key}", "", doc.description or "_No description yet._", ""]
    meta = [f"layer: {doc.layer}"] + ([f"owner: {doc.owner}"] if doc.owner else []) + (
        [f"tags: {', '.join(doc.tags)}"] if doc.tags else [])
    lines += [" · ".join(meta), "", "| column | type | description | pii | computed from |", "|---|---|---|---|---|"]
    for c in doc.columns:
        pii = "yes" + (f" (from {c.pii_from})" if c.pii_from else "") if c.pii else ""
        lines.append(f"| `{cell(c.name)}` | {cell(c.type or '')} | {cell(c.description)} | {pii} | "
                     f"{cell(', '.join(c.sources))} |")
    if doc.upstream:
        lines += ["", "Upstream: " + ", ".join(doc.upstream)]
    if doc.downstream:
        lines += ["", "Downstream: " + ", ".join(doc.downstream)]
    return "\n".join(lines) + "\n"


def write_site(dictionary: Dictionary, out: Path) -> list[Path]:
    """Write ``index.html``, ``assets/<key>.html`` and ``markdown/<key>.md`` under ``out``."""
    (out / "assets").mkdir(parents=True, exist_ok=True)
    (out / "markdown").mkdir(parents=True, exist_ok=True)
    written = [out / "index.html"]
    written[0].write_text(index_html(dictionary), encoding="utf-8")
    for key, doc in dictionary.assets.items():
        page = out / "assets" / f"{key}.html"
        page.write_text(asset_html(doc), encoding="utf-8")
        md = out / "markdown" / f"{key}.md"
        md.write_text(asset_markdown(doc), encoding="utf-8")
        written += [page, md]
    readme = out / "markdown" / "README.md"
    readme.write_text("# Data catalog\n\n" + "\n".join(
        f"- [{k}]({k}.md): {d.description}" for k, d in dictionary.assets.items()) + "\n", encoding="utf-8")
    written.append(readme)
    return written
