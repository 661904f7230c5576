"""The ``memfold`` command line: look into a store, search it, export and import its threads.

Every command takes ``--url`` (default: ``$MEMFOLD_URL``, else ``sqlite:///memfold.db``) and
``--tenant``. A memfold error is printed as one red line and exits with status 1.

For example:

```console
$ memfold threads --url sqlite:///chat.db
$ memfold export --output backup.jsonl
$ memfold import backup.jsonl --url sqlite:///copy.db
$ memfold migrate sqlite:///chat.db postgresql://localhost/chat
$ memfold db upgrade --url postgresql://localhost/chat --dry-run
$ memfold erase --url sqlite:///chat.db --tenant acme --user ann --dry-run
$ MEMFOLD_KEYS=k2:...,k1:... memfold rotate-key --url sqlite:///chat.db
```
"""

from memfold.cli import db, maintenance, privacy, threads, transfer
from memfold.cli.common import app

__all__ = ["app", "db", "maintenance", "privacy", "threads", "transfer"]
