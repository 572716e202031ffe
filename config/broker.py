"""The embedded broker: kombu's filesystem transport, with atomic message writes.

kombu's filesystem Channel creates a message file and then writes into it, while a consumer moves and
reads any `*.<queue>.msg` file it lists, without taking the producer's lock. A worker that lists the
folder in between reads an empty message; its consumer dies with JSONDecodeError and the message is
lost (the symptom reported in celery/kombu#1551). Our benchmark hit it within a few hundred jobs. Here
a message is written under a name the consumer does not match (`….msg.partial`) and renamed into place,
which is atomic within one filesystem. Reading is kombu's own code, unchanged.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    # kombu's stubs name the message `payload` here and `message` on the base channel: no signature fits both.
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        # Same name scheme as kombu's (sorted by time, then matched on ".<queue>.msg").
        name = os.path.join(self.data_folder_out, f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg")
        partial = f"{name}.partial"
        try:
            with open(partial, "wb") as fh:
                fh.write(str_to_bytes(dumps(payload)))
            os.replace(partial, name)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {name!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel


def install() -> None:
    """Make `filesystem://` broker URLs use this transport, in every process that loads our Celery app."""
    TRANSPORT_ALIASES["filesystem"] = "config.broker:Transport"
