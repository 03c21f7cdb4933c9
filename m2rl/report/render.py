"""One document model rendered twice: Markdown, and a self-contained HTML page (inline
CSS, PNGs embedded as base64 data URIs, no script, nothing fetched)."""
from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Doc:
    title: str
    blocks: list[tuple] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def warn(self, text: str) -> None:
        self.blocks.append(("warn", text))

    def items(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("list", items))

    def table(self, headers: list[str], rows: list[list], align: str | None = None, caption: str = "") -> None:
        """align: one letter per column, 'l' or 'r' (default: first column left, others right)."""
        align = align or "l" + "r" * (len(headers) - 1)
        self.blocks.append(("table", headers, [[_cell(c) for c in r] for r in rows], align, caption))

    def img(self, path: Path, rel: str, alt: str) -> None:
        self.blocks.append(("img", path, rel, alt))


def _cell(v) -> str:
    return "" if v is None else str(v)


def to_markdown(doc: Doc) -> str:
    out = [f"# {doc.title}", ""]
    for b in doc.blocks:
        kind = b[0]
        if kind == "h":
            out += ["#" * (b[1] + 1) + " " + b[2], ""]
        elif kind == "p":
            out += [b[1], ""]
        elif kind == "warn":
            out += ["> **Warning:** " + b[1].replace("\n", "\n> "), ""]
        elif kind == "list":
            out += [f"- {i}" for i in b[1]] + [""]
        elif kind == "table":
            _, headers, rows, align, caption = b
            esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
            out.append("| " + " | ".join(esc(h) for h in headers) + " |")
            out.append("|" + "|".join("---:" if a == "r" else "---" for a in align) + "|")
            out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
            out += [""] + ([f"*{caption}*", ""] if caption else [])
        elif kind == "img":
            out += [f"![{b[3]}]({b[2]})", ""]
    return "\n".join(out).rstrip() + "\n"


_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")
_ITAL = re.compile(r"(?<![*\w])\*([^*]+)\*(?![*\w])")
_UNDER = re.compile(r"&lt;u&gt;(.+?)&lt;/u&gt;")  # <u>second best</u> in the accuracy tables


def _inline(text: str) -> str:
    s = html.escape(str(text), quote=False)
    s = _CODE.sub(r"<code>\1</code>", s)
    s = _BOLD.sub(r"<strong>\1</strong>", s)
    s = _UNDER.sub(r"<u>\1</u>", s)
    return _ITAL.sub(r"<em>\1</em>", s)


CSS = """
body{font:15px/1.45 -apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;color:#1d2228;max-width:1180px;
margin:2em auto;padding:0 1.2em}
h1{font-size:1.7em;border-bottom:2px solid #2b6cb0;padding-bottom:.25em}
h2{font-size:1.3em;margin-top:1.8em;border-bottom:1px solid #d8dde3;padding-bottom:.2em}
h3{font-size:1.08em;margin-top:1.4em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.9em}
th,td{border:1px solid #d8dde3;padding:.3em .6em;vertical-align:top}
th{background:#eef2f7;text-align:left}
td.r{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr:nth-child(even) td{background:#f8fafc}
caption{caption-side:bottom;font-size:.85em;color:#5a6470;text-align:left;padding-top:.3em}
code{background:#eef2f7;padding:0 .25em;border-radius:3px;font-size:.92em}
.warn{background:#fff6e0;border-left:4px solid #d69e2e;padding:.5em .9em;margin:1em 0}
img{max-width:100%;border:1px solid #e2e6ea;margin:.5em 0 1em}
"""


def to_html(doc: Doc) -> str:
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{html.escape(doc.title)}</title><style>{CSS}</style></head><body>",
           f"<h1>{_inline(doc.title)}</h1>"]
    for b in doc.blocks:
        kind = b[0]
        if kind == "h":
            out.append(f"<h{b[1] + 1}>{_inline(b[2])}</h{b[1] + 1}>")
        elif kind == "p":
            out.append(f"<p>{_inline(b[1])}</p>")
        elif kind == "warn":
            out.append(f'<div class="warn"><strong>Warning:</strong> {_inline(b[1])}</div>')
        elif kind == "list":
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b[1]) + "</ul>")
        elif kind == "table":
            _, headers, rows, align, caption = b
            cap = f"<caption>{_inline(caption)}</caption>" if caption else ""
            head = "".join(f"<th>{_inline(h)}</th>" for h in headers)
            body = "".join("<tr>" + "".join(f'<td class="{a}">{_inline(c)}</td>' for a, c in zip(align, r)) + "</tr>"
                           for r in rows)
            out.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif kind == "img":
            data = base64.b64encode(Path(b[1]).read_bytes()).decode()
            out.append(f'<img alt="{html.escape(b[3])}" src="data:image/png;base64,{data}">')
    out.append("</body></html>")
    return "\n".join(out) + "\n"
