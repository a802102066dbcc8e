"""Jobs: the SQLite store (:mod:`.store`), the data folder (:mod:`.files`), the settings of a job
(:mod:`.params`), its cache key (:mod:`.keys`), what runs jobs (:mod:`.executor`) and what keeps the data
folder tidy (:mod:`.retention`)."""
