"""Jobs: the SQLite store (:mod:`.store`), the data folder (:mod:`.files`), the settings of a job
(:mod:`.params`), its cache key (:mod:`.keys`), what runs jobs (:mod:`.executor`: the queue and the in-process
worker; :mod:`.ray_executor`: replicas on a Ray cluster), a job's own code wherever it runs (:mod:`.running`) and
what keeps the data folder tidy (:mod:`.retention`)."""
