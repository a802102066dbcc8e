"""Jobs: the SQLite store (:mod:`.store`), the data folder (:mod:`.files`), the settings of a job
(:mod:`.params`), its cache key (:mod:`.keys`) and what runs jobs (:mod:`.executor`)."""
