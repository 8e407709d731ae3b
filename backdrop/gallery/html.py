"""gallery.html: one self-contained page (inline CSS and JS, no network) for a batch's cards.

Every piece of text from a report or a summary goes through `html.escape`; on top of that a
Content-Security-Policy allows only this page's own script (by hash) and local pictures, so even a
missed escape could neither run script nor reach the network.
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from collections.abc import Iterable
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from backdrop.gallery.cards import Candidate, Card
from backdrop.gallery.pictures import THUMB_LONG_SIDE, Picture

__all__ = ["EAGER_CARDS", "money", "render_html"]

#: cards whose pictures load at once; later ones load as they scroll into view (big batches)
EAGER_CARDS = 40

_CSS = """
:root{--bg:#f5f5f2;--card:#fff;--ink:#23252a;--mute:#6b6f76;--line:#e3e3de;--ok:#1f7a4d;
--bad:#b3261e;--warn:#9a6700;--grey:#5f6368;font-family:system-ui,-apple-system,"Segoe UI",
Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--ink);background:var(--bg)}
*{box-sizing:border-box}body{margin:0;padding:24px 28px 48px}[hidden]{display:none!important}
header.run h1{font-size:20px;font-weight:600;margin:0 0 4px}.sub{color:var(--mute);font-size:13px;
margin:0 0 16px;overflow-wrap:anywhere}.stats{display:flex;flex-wrap:wrap;gap:10px;margin:0 0 16px;
padding:0}.stats div{background:var(--card);border:1px solid var(--line);border-radius:10px;
padding:8px 14px;min-width:96px}.stats dt{font-size:12px;color:var(--mute)}.stats dd{margin:2px 0 0;
font-size:20px;font-weight:600}.codes{font-size:13px;color:var(--mute);margin:0 0 16px}
nav{display:flex;gap:8px;align-items:center;margin:0 0 20px}nav button{font:inherit;font-size:14px;
border:1px solid var(--line);background:var(--card);border-radius:999px;padding:6px 14px;
cursor:pointer;color:var(--ink)}nav button[aria-pressed=true]{background:var(--ink);color:#fff;
border-color:var(--ink)}nav .shown{margin-left:8px;color:var(--mute);font-size:13px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(540px,1fr));gap:16px}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:14px 16px;
box-shadow:0 1px 2px rgba(0,0,0,.04)}.card>header{display:flex;align-items:baseline;gap:10px;
margin-bottom:10px}.card h2{font-size:15px;font-weight:600;margin:0;overflow-wrap:anywhere}
.line{color:var(--mute);font-size:12px}.badge{margin-left:auto;font-size:12px;font-weight:600;
padding:2px 10px;border-radius:999px;white-space:nowrap}
.st-succeeded{background:#e3f3ea;color:var(--ok)}
.st-failed{background:#fbe4e2;color:var(--bad)}.st-pending_reconcile{background:#fdf1d6;
color:var(--warn)}.st-skipped,.st-other{background:#eceff1;color:var(--grey)}
.pair{display:flex;gap:12px}figure{margin:0}.frame{width:FRAMEpx;height:FRAMEpx;display:flex;
align-items:center;justify-content:center;background:#f0f0ec;border-radius:8px;overflow:hidden}
.frame img{display:block;max-width:100%;max-height:100%}.ph{color:var(--mute);font-size:13px;
text-align:center;padding:12px;overflow-wrap:anywhere}figcaption{font-size:12px;color:var(--mute);
margin-top:4px;max-width:FRAMEpx;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.prompt{margin:12px 0 0;font-size:14px;overflow-wrap:anywhere}.prompt .k,.meta dt{color:var(--mute)}
.error{margin:10px 0 0;font-size:13px;background:#fdf3f2;border-left:3px solid var(--bad);
padding:6px 10px;border-radius:4px;overflow-wrap:anywhere}.st-other-box{background:#f4f5f6;
border-left-color:var(--grey)}code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;
font-size:12px}.meta{display:flex;flex-wrap:wrap;gap:4px 16px;margin:10px 0 0;font-size:12px}
.meta dd{margin:0 0 0 4px}.meta div{display:flex;max-width:100%;overflow-wrap:anywhere}
.notes{margin:8px 0 0;padding-left:18px;font-size:12px;color:var(--mute)}
.empty{color:var(--mute)}.card[data-group=failed]{border-color:#efc7c3}
.pair.cands{flex-wrap:wrap}.cmd{display:block;margin-top:4px;max-width:FRAMEpx;overflow-wrap:anywhere;
background:#f4f5f6;border-radius:4px;padding:3px 6px;user-select:all}
.settle{margin:10px 0 0;font-size:12px;color:var(--mute)}.settle .cmd{max-width:none}
""".replace("FRAME", str(THUMB_LONG_SIDE))

_JS = """(() => {
  const cards = [...document.querySelectorAll(".card")];
  const buttons = [...document.querySelectorAll("button[data-filter]")];
  const shown = document.querySelector(".shown");
  const apply = (f) => {
    let n = 0;
    for (const c of cards) {
      const on = f === "all" || c.dataset.group === f;
      c.hidden = !on;
      n += on;
    }
    for (const b of buttons) b.setAttribute("aria-pressed", String(b.dataset.filter === f));
    shown.textContent = n + " of " + cards.length + " rows";
  };
  for (const b of buttons) b.addEventListener("click", () => apply(b.dataset.filter));
  const start = location.hash.slice(1);
  if (buttons.some((b) => b.dataset.filter === start)) apply(start);
  addEventListener("load", () => {
    const imgs = [...document.images];
    document.body.dataset.cards = cards.length;
    document.body.dataset.images = imgs.length;
    const loaded = imgs.filter((i) => i.complete && i.naturalWidth > 0);
    document.body.dataset.imagesLoaded = loaded.length;
  });
})();"""

_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_JS.encode()).digest()).decode()
_CSP = (f"default-src 'none'; img-src 'self' file:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{_SCRIPT_HASH}'; base-uri 'none'; form-action 'none'")
_GROUPS = (("all", "All"), ("succeeded", "Succeeded"), ("failed", "Failed"), ("other", "Other"))


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def money(amount: float, currency: str = "") -> str:
    """2 decimals, or up to 4 when the amount needs them (unit prices like 0.055)."""
    text = f"{amount:,.2f}" if round(amount, 2) == amount else f"{amount:,.4f}".rstrip("0")
    return f"{text} {currency}".strip()


def _href(href: str | None) -> str | None:
    if href is None:
        return None
    if href.startswith(("http://", "https://")):
        return href
    return quote(href)  # a relative path inside the output folder


def _figure(pic: Picture, caption: str, alt: str, out_dir: Path, lazy: bool, after: str = "") -> str:
    if pic.thumb is not None:
        src = quote(pic.thumb.resolve().relative_to(out_dir).as_posix())
        loading = ' loading="lazy"' if lazy else ""
        inner = (f'<img src="{src}" width="{pic.width}" height="{pic.height}" alt="{_e(alt)}"'
                 f'{loading} decoding="async">')
    else:
        inner = f'<div class="ph">{_e(pic.missing)}</div>'
    href = _href(pic.href)
    if href is not None:
        inner = f'<a href="{_e(href)}" rel="noopener noreferrer">{inner}</a>'
    return (f'<figure><div class="frame">{inner}</div>'
            f'<figcaption title="{_e(caption)}">{_e(caption)}</figcaption>{after}</figure>')


def _candidate(cand: Candidate, row_id: str, out_dir: Path, lazy: bool) -> str:
    """A candidate charge's result beside the input, and the command that settles the row with it."""
    command = f'<code class="cmd">{_e(cand.command)}</code>'
    return _figure(cand.picture, f"candidate · {cand.task_id}",
                   f"result of candidate charge {cand.task_id} for {row_id}", out_dir, lazy, command)


def _card(card: Card, currency: str, out_dir: Path, lazy: bool) -> str:
    status = card.status
    parts = [
        f'<article class="card" data-group="{_e(card.group)}" data-status="{_e(status)}">',
        f'<header><h2>{_e(card.row_id)}</h2><span class="line">line {card.line}</span>'
        f'<span class="badge st-{_e(status)}">{_e(status.replace("_", " "))}</span></header>',
        '<div class="pair cands">' if card.candidates else '<div class="pair">',
        _figure(card.before, f"before · {card.input_label}", f"input of {card.row_id}", out_dir,
                lazy),
    ]
    if card.candidates:  # a pending row: the input beside each charge that may be its result
        parts += [_candidate(c, card.row_id, out_dir, lazy) for c in card.candidates]
    else:
        parts.append(_figure(card.after, "after", f"result of {card.row_id}", out_dir, lazy))
    parts.append("</div>")
    if card.candidates:
        more = (f"{card.candidates_left_out} more candidate charges are not drawn here "
                "(`backdrop reconcile` lists them all); " if card.candidates_left_out else "")
        parts.append(f'<p class="settle">{_e(more)}none of these is its result: '
                     f'<code class="cmd">{_e(card.not_created_command)}</code></p>')
    if card.prompt:
        parts.append(f'<p class="prompt"><span class="k">prompt</span> {_e(card.prompt)}</p>')
    if card.template_id:
        parts.append(f'<p class="prompt"><span class="k">template</span> '
                     f"<code>{_e(card.template_id)}</code></p>")
    if card.error_code or card.error_message:
        box = "error" if status == "failed" else "error st-other-box"
        stage = f" at {_e(card.failed_stage)}" if card.failed_stage else ""
        parts.append(f'<p class="{box}"><code>{_e(card.error_code or "error")}</code>{stage}: '
                     f"{_e(card.error_message)}</p>")
    meta = [("units", str(card.units)), ("cost", money(card.cost, currency))]
    if card.task_id:
        meta.append(("task", card.task_id[:16] + ("…" if len(card.task_id) > 16 else "")))
    meta += card.extra
    parts.append('<dl class="meta">' + "".join(
        f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in meta) + "</dl>")
    if card.notes:
        notes = "".join(f"<li>{_e(n)}</li>" for n in card.notes)
        parts.append(f'<ul class="notes">{notes}</ul>')
    parts.append("</article>")
    return "".join(parts)


def _header(summary: dict[str, Any]) -> str:
    currency = str(summary.get("currency", ""))
    stats = [
        ("Rows", summary.get("rows", 0)), ("Succeeded", summary.get("succeeded", 0)),
        ("Failed", summary.get("failed", 0)), ("Skipped", summary.get("skipped", 0)),
        ("Pending", summary.get("pending_reconcile", 0)),
        ("Units", summary.get("units_charged", 0)),
        ("Cost", money(float(summary.get("cost", 0) or 0), currency)),
    ]
    csv = str(summary.get("csv") or "")
    sub = [Path(csv).name or csv] if csv else []
    if summary.get("feature"):
        sub.append(str(summary["feature"]))
    if summary.get("run_id"):
        sub.append(f"run {summary['run_id']}")
    if summary.get("unit_price") is not None:
        sub.append(f"{money(float(summary['unit_price']), currency)} per unit")
    title = "Backdrop dry run" if summary.get("dry_run") else "Backdrop batch"
    cells = "".join(f'<div data-stat="{_e(k.lower())}"><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>'
                    for k, v in stats)
    html = [f'<header class="run"><h1>{_e(title)}</h1>',
            f'<p class="sub" title="{_e(csv)}">{_e(" · ".join(sub))}</p>',
            f'<dl class="stats">{cells}</dl>']
    if summary.get("dry_run") and "estimated_units" in summary:
        html.append(f'<p class="codes">would cost {_e(summary["estimated_units"])} units '
                    f'({_e(money(float(summary.get("estimated_cost", 0)), currency))})</p>')
    codes = summary.get("failures_by_code") or {}
    if codes:
        html.append('<p class="codes">failures: ' + ", ".join(
            f"<code>{_e(k)}</code> × {_e(v)}" for k, v in sorted(codes.items())) + "</p>")
    html.append("</header>")
    return "".join(html)


def render_html(cards: Iterable[Card], summary: dict[str, Any], out_dir: Path) -> str:
    """The whole page; picture paths are written relative to `out_dir`, where the page lives."""
    out_dir = out_dir.resolve()
    currency = str(summary.get("currency", ""))
    body, groups = [], Counter[str]()
    for i, card in enumerate(cards):
        groups[card.group] += 1
        body.append(_card(card, currency, out_dir, lazy=i >= EAGER_CARDS))
    total = sum(groups.values())
    counts = {"all": total, **groups}
    nav = "".join(
        f'<button type="button" data-filter="{g}" aria-pressed="{str(g == "all").lower()}">'
        f"{label} <span>{counts.get(g, 0)}</span></button>" for g, label in _GROUPS)
    grid = "".join(body) if body else '<p class="empty">No rows in this report.</p>'
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{_e(_CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e('Backdrop · ' + Path(str(summary.get('csv') or 'batch')).name)}</title>"
        f"<style>{_CSS}</style></head>\n<body>{_header(summary)}"
        f'<nav aria-label="Filter rows">{nav}'
        f'<span class="shown">{total} of {total} rows</span></nav>\n'
        f'<main class="grid">{grid}</main>\n<script>{_JS}</script></body></html>\n'
    )
