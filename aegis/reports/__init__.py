"""Reports: the evening digest and the morning status from SQL aggregates
(``digest.py``), as markdown (``markdown.py``) written into the journal folder
(``journal.py``); every host sharing the database and who is silent (``fleet.py``); and
retention, in batches (``retention.py``)."""
