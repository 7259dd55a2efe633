"""The finite vocabularies of the UDTS environment (docs/SPEC.md §1.1-1.3).

Every symbol is a small integer. Words are what the prompts (docs/SPEC.md §2) and the
tables print; they are named only for the paper's vocabulary sizes, otherwise
the messages are abstract symbols ``m0, m1, ...`` whose meaning has to emerge.
"""

from __future__ import annotations

# UE buffer actions (paper Sec. II-A2).
NOTHING, TRANSMIT, DELETE = 0, 1, 2
UE_ACTION_WORDS = ("nothing", "transmit", "delete")

# Uplink control messages, when ucm_vocab == 2.
UCM_NULL, SCHEDULE_REQUEST = 0, 1
NAMED_UCM_WORDS = ("null", "schedule_request")

# Downlink control messages, when dcm_vocab == 3.
DCM_NULL, SCHEDULE_GRANT, ACKNOWLEDGE = 0, 1, 2
NAMED_DCM_WORDS = ("null", "schedule_grant", "acknowledge")

# Channel outcome of one TTI on the PUSCH, as the BS sees it (docs/SPEC.md §1.2 step 4).
IDLE, COLLISION, SUCCESS, FAILURE = 0, 1, 2, 3
CHANNEL_WORDS = ("idle", "collision", "success", "failure")
NO_SENDER = -1  # sender field of an idle or collision TTI


def message_words(vocab: int, named: tuple[str, ...]) -> tuple[str, ...]:
    """Words of a message vocabulary: ``named`` if the size matches, else ``m0, m1, ...``."""
    if vocab == len(named):
        return named
    return tuple(f"m{i}" for i in range(vocab))
