"""Settings for every process: their declaration (:mod:`config.catalog`), the one reader of ``.env`` and the
environment (:mod:`config.reader`), the logging set-up (:mod:`config.logs`) and the settings part of each
command's ``--help`` (:mod:`config.helptext`), and the units the code converts between (:mod:`config.units`). Imports
nothing of bot/, generator/ or web/ (jobs.db only, lazily, to normalise DATABASE_URL)."""
