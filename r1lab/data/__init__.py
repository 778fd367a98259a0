"""Reading user data: files, dataset folders and hub ids, with one-line errors that name the
config field to fix (``r1lab.data.files``), and the sample files shipped with the package.

Generic: what a task's rows mean lives with the task (``r1lab.tasks``); this package imports
nothing else of r1lab. Imports without DeepSpeed, W&B or a GPU."""
from r1lab.data.files import SAMPLES_DIR, load_source, load_table, require_columns

__all__ = ["SAMPLES_DIR", "load_source", "load_table", "require_columns"]
