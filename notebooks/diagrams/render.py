"""Draw the lessons' Mermaid diagrams as PNG files and refresh the copies attached to the lessons.

Run from the repository root:

    python notebooks/diagrams/render.py

Each ``<lesson>.mmd`` in this folder is drawn to ``<lesson>.png`` by the Mermaid renderer itself
(mermaid-cli's ``mmdc`` driving a local Chromium; ``$MMDC`` names the ``mmdc`` to use, otherwise
``npx`` fetches ``@mermaid-js/mermaid-cli``). Then every lesson whose markdown shows
``attachment:<lesson>.png`` gets the new picture as that cell's attachment, and a lesson whose Mermaid
block differs from its ``.mmd`` file is named, so that the two copies of a diagram cannot drift apart
unnoticed.
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
NOTEBOOKS = HERE.parent
MMDC_VERSION = "11.17.0"  # the mermaid-cli that drew the committed pictures (Mermaid 11.17)
MERMAID = re.compile(r"```mermaid\n(.*?)```", re.S)


def mmdc() -> list[str]:
    if os.environ.get("MMDC"):
        return shlex.split(os.environ["MMDC"])
    return ["npx", "--yes", "-p", f"@mermaid-js/mermaid-cli@{MMDC_VERSION}", "mmdc"]


def render(source: Path) -> Path:
    """``source`` (.mmd) drawn to the PNG beside it, white background, at its natural size.

    The page is wide enough (2400 px) that Mermaid never shrinks a wide flowchart to fit it.
    """
    target = source.with_suffix(".png")
    env = {**os.environ, "PUPPETEER_SKIP_DOWNLOAD": "1"}  # use the local Chromium of puppeteer.json
    subprocess.run([*mmdc(), "--quiet", "-p", str(HERE / "puppeteer.json"), "-b", "white", "-w", "2400", "-s", "1",
                    "-i", str(source), "-o", str(target)], check=True, env=env)
    return target


def refresh(notebook: Path, pictures: dict[str, Path]) -> None:
    """Replace the attached copies of ``pictures`` in ``notebook``; name a Mermaid block that differs from its file."""
    nb = nbformat.read(notebook, as_version=4)
    changed = False
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for name, png in pictures.items():
            if f"attachment:{name}" in cell.source:
                cell.setdefault("attachments", {})[name] = {
                    "image/png": base64.b64encode(png.read_bytes()).decode("ascii")}
                changed = True
                for block in MERMAID.findall(cell.source):
                    if block != png.with_suffix(".mmd").read_text():
                        print(f"{notebook.name}: its Mermaid block differs from {png.with_suffix('.mmd').name}",
                              file=sys.stderr)
    if changed:
        nbformat.write(nb, notebook)
        print(f"attached: {notebook.relative_to(NOTEBOOKS.parent)}")


def main() -> None:
    pictures = {}
    for source in sorted(HERE.glob("*.mmd")):
        png = render(source)
        pictures[png.name] = png
        print(f"drew: {png.relative_to(NOTEBOOKS.parent)}")
    for notebook in sorted(NOTEBOOKS.glob("*.ipynb")):
        refresh(notebook, pictures)


if __name__ == "__main__":
    main()
