"""rosbag2 bags: reading (sqlite3, MCAP, salvage), the one writer, incident bags.

The layer below ``ros`` and ``replay`` and above ``core``: it may use ``rosbags`` (pure
Python), never rclpy. ``types`` holds what every module shares (records, topics, the type
store, errors); ``mcap`` reads an indexed MCAP file against its index and fills in the CRCs
of the files we write; ``salvage`` scans an MCAP file without a usable summary; ``reader``
opens a bag and accounts for every message; ``writer`` is the one writer (CRCs included);
``incident`` writes the incident bags of :mod:`wam_runtime.core.incident`'s window.
"""

from wam_runtime.bag.reader import BagSource, open_bag, read_all
from wam_runtime.bag.types import BagError, Record, STORAGE_PLUGINS, TopicInfo, typestore
from wam_runtime.bag.writer import BagWriter, copy_bag, storage_file

__all__ = ['BagError', 'BagSource', 'BagWriter', 'copy_bag', 'open_bag', 'read_all', 'Record',
           'STORAGE_PLUGINS', 'storage_file', 'TopicInfo', 'typestore']
