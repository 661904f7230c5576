"""The ``memfold`` command line: look into a store, search it, export and import its threads.

Every command takes ``--url`` (default: ``$MEMFOLD_URL``, else ``sqlite:///memfold.db``) and
``--tenant``. A memfold error is printed as one red line and exits with status 1.

For example:

```console
$ memfold threads --url sqlite:///chat.db
$ memfold export --output backup.jsonl
$ memfold import backup.jsonl --url sqlite:///copy.db
$ memfold migrate sqlite:///chat.db postgresql://localhost/chat
```
"""

from memfold.cli import maintenance, threads, transfer
from memfold.cli.common import app

__all__ = ["app", "maintenance", "threads", "transfer"]
