"""What the passes of one pipeline run share besides the IR.

A pass is a function ``run(graph, ctx) -> graph``: the IR goes in and out; the
context carries what is not the IR: the compile options, the calibration data the
data-driven passes read (calibrate, convert, quantize), and the notes a pass leaves
for the report.  The pass manager records the notes in the IR it returns
(``meta["notes"]``, next to ``meta["passes"]``), so that an IR saved by
``--stop-after`` keeps them and ``--start-from`` resumes with them; no pass reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from snncc.options import CompileOptions


@dataclass
class PassContext:
    options: CompileOptions = field(default_factory=CompileOptions)
    calib: object = None  # snncc.calib_data.CalibData, or None: the passes that need data say so
    notes: list[str] = field(default_factory=list)  # for report["notes"], in pipeline order

    def note(self, text: str) -> None:
        self.notes.append(text)
