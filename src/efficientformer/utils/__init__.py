"""Small helpers every other layer may use: atomic file writes (JSON, CSV, PNG), progress bars, optional imports,
torch's thread count, image sizes, the machine line of reports. (The signal-stack guard for OpenVINO is
`utils.signals`, imported where it is needed.)"""

from efficientformer.utils.io import atomic_write, write_csv, write_json
from efficientformer.utils.machine import machine_line
from efficientformer.utils.optional import require
from efficientformer.utils.plots import pyplot, save_png
from efficientformer.utils.progress import progress_bar
from efficientformer.utils.sizes import to_pair
from efficientformer.utils.threads import threads

__all__ = ["atomic_write", "machine_line", "progress_bar", "pyplot", "require", "save_png", "threads", "to_pair",
           "write_csv", "write_json"]
