"""Side by side: several models trained with one recipe on one dataset, timed on one runtime (issue 16).

`run_compare` trains each model through the training job and times the trained weights through
bench's harness; `compare.report` writes compare.csv / compare.json / compare.png and the markdown table.
"""

from efficientformer.compare.report import markdown_table, pareto_front, write_report
from efficientformer.compare.rows import CompareRow
from efficientformer.compare.run import DEFAULT_MODELS, CompareConfig, CompareResult, run_compare

__all__ = ["DEFAULT_MODELS", "CompareConfig", "CompareResult", "CompareRow", "markdown_table", "pareto_front",
           "run_compare", "write_report"]
