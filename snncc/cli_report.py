"""`snncc report`: turn a report.json into one self-contained HTML page."""

from __future__ import annotations

import json
from pathlib import Path

import click

from snncc.errors import SnnccError

SUPPORTED_SCHEMA_VERSIONS = (1,)


def load_report(path: Path) -> dict:
    """Read and sanity-check a report.json; SnnccError (one line) on anything wrong."""
    path = Path(path)
    if not path.is_file():
        raise SnnccError(f"argument REPORT_JSON: file not found: {path}")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SnnccError(f"argument REPORT_JSON: {path} is not JSON ({exc.__class__.__name__})") from None
    if not isinstance(report, dict):
        raise SnnccError(f"argument REPORT_JSON: {path} is not a report (expected a JSON object)")
    version = report.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise SnnccError(f"argument REPORT_JSON: {path} has schema_version {version!r}; this snncc reads "
                         f"{', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))}")
    return report


@click.command(name="report", epilog="""\b
Examples:
  snncc report build/digits/report.json -o digits.html
  snncc report build/digits/report.json          # writes build/digits/report.html
  snncc report build/digits/report.json --text   # the summary `snncc compile` prints
""")
@click.argument("report_json", metavar="REPORT_JSON", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="HTML file to write (default: report.html next to REPORT_JSON).")
@click.option("--text", "text_only", is_flag=True, help="Print the text summary instead of writing HTML.")
def report_cmd(report_json: Path, output: Path | None, text_only: bool):
    """Render a compile's REPORT_JSON as a self-contained HTML page (plots embedded)."""
    report = load_report(report_json)
    if text_only:
        from snncc.text_report import format_summary

        click.echo(format_summary(report))
        return
    from snncc.html_report import write_html_report

    output = output or report_json.with_name("report.html")
    if output.is_dir():
        raise SnnccError(f"option -o/--output: {output} is a folder; give a file name")
    if not output.parent.is_dir():
        raise SnnccError(f"option -o/--output: folder {output.parent} does not exist")
    write_html_report(report, output)
    click.echo(f"wrote {output}")
