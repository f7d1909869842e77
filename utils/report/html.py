"""results/<dataset>/report.html: one static page to open from the file system (no server, no scripts).

Images are files beside the page (`report_files/`), referenced by relative paths, so the
folder can be zipped and mailed as it is. Every name and string on the page is escaped
(`_text`), and image paths are percent-encoded before that (`_src`): a video or folder
called `<b>&"x` shows as such and cannot add markup.
The metrics table shows the rows of utils/metrics/table.py that have a report label.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from urllib.parse import quote

from utils.metrics.table import METRICS

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.9em; } td, th { border: 1px solid #ddd; padding: 3px 8px; }
th { background: #f4f4f4; text-align: left; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f7f7f7; padding: 0.8em; font-size: 0.85em; white-space: pre-wrap; }
figure { margin: 1em 0; } figcaption { font-size: 0.85em; color: #555; } img { max-width: 100%; }
.video { margin-bottom: 2em; }
"""

def _text(value) -> str:
    return html.escape(str(value), quote=True)


def _src(relative_path: str) -> str:
    """An image path as an attribute value: percent-encoded (so '#', '?' and '%' in a video's name stay part
    of the path), then escaped."""
    return _text(quote(relative_path, safe="/"))


def _number(value) -> str:
    return "—" if value is None else f"{value:.4f}" if isinstance(value, float) else _text(value)


def write_report(path: Path, *, title: str, metrics: dict, protocol: str, per_video: list[dict],
                 roc_image: str, video_images: list[tuple[str, str, str]], notes: list[str] | None = None) -> Path:
    """Write the page. `video_images`: per video (name, score-curve image, top-frame image), paths
    relative to the page; `per_video`: rows of the per-video table."""
    rows = "".join(f"<tr><td>{_text(metric.label)}</td><td class=n>{_number(metrics.get(metric.key))}</td>"
                   f"<td><code>{_text(metric.key)}</code></td></tr>"
                   for metric in METRICS if metric.label is not None and metric.key in metrics)
    counts = (f"{metrics['n_frames']} test frames ({metrics['n_anomalous_frames']} anomalous) in "
              f"{metrics['n_videos']} videos; {metrics['n_cubes']} cubes")
    video_rows = "".join(
        f"<tr><td>{_text(r['video'])}</td><td class=n>{_number(r['frames'])}</td>"
        f"<td class=n>{_number(r['anomalous_frames'])}</td>"
        f"<td class=n>{_number(r['auroc'])}</td><td class=n>{_number(r['ap'])}</td></tr>" for r in per_video)
    videos = "".join(
        f"<div class=video><h3>{_text(name)}</h3>"
        f"<figure><img src=\"{_src(curve)}\" alt=\"frame scores of {_text(name)}\">"
        f"<figcaption>frame score over time; ground-truth anomalous frames shaded</figcaption></figure>"
        f"<figure><img src=\"{_src(top)}\" alt=\"highest-scoring frame of {_text(name)}\">"
        f"<figcaption>the video's highest-scoring frame: boxes coloured by score, the pixel score map, "
        f"ground truth outlined in green</figcaption></figure></div>" for name, curve, top in video_images)
    settings = {key: metrics[key] for key in ("dataset", "flow_method", "detector", "foreground_extraction_mode",
                                               "boxes", "model", "cloze", "reproducibility") if key in metrics}
    note_items = "".join(f"<li>{_text(n)}</li>" for n in notes or [])
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_text(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{_text(title)}</h1>
<p>{_text(counts)}</p>
<h2>Metrics</h2>
<table><tr><th>metric</th><th>value</th><th>key in metrics.json</th></tr>{rows}</table>
<ul>{note_items}</ul>
<h2>Protocol</h2>
<pre>{_text(protocol)}</pre>
<h2>ROC curve</h2>
<figure><img src="{_src(roc_image)}" alt="ROC curve"></figure>
<h2>Per video</h2>
<table><tr><th>video</th><th>frames</th><th>anomalous</th><th>AUROC</th><th>AP</th></tr>{video_rows}</table>
{videos}
<h2>Settings</h2>
<pre>{_text(json.dumps(settings, indent=1, ensure_ascii=False))}</pre>
</body></html>
"""
    Path(path).write_text(page, encoding="utf-8")
    return Path(path)
