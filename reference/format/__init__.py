"""Microsoft Tape Format (MTF 1.00a): declarations, data-set writer, media writer, reader.

See docs/format.md for the profile we write, the vendor streams and the Exchange mapping.
"""

from .media import MediaFullError, MediaIdentity, MediaWriter, SetPlacement
from .catalog import Catalog, ObjectEntry, Problem
from .reader import MtfReader
from .sources import BkfMedium, Medium, TapMedium, open_medium
from .writer import DataSetWriter, EsetInfo, FileRecord

__all__ = [
    "BkfMedium", "Catalog", "DataSetWriter", "EsetInfo", "FileRecord", "MediaFullError",
    "MediaIdentity", "MediaWriter", "Medium", "MtfReader", "ObjectEntry", "Problem",
    "SetPlacement", "TapMedium", "open_medium",
]
