"""The keeper's one error tree.

Every failure the keeper raises on purpose is a ``KeeperError``. The two branches
tell the caller what to do with it:

* ``RetryableError``: transient (a timeout, a dropped connection, a node that is
  behind). The retry policies in ``keeper.chain.retry`` retry these and only these.
* ``FatalError``: retrying cannot help (bad configuration, a contract that reverts
  for a reason the keeper cannot change, a journal that contradicts the chain).
  The runner stops or skips the unit of work and says why.
"""

from __future__ import annotations


class KeeperError(Exception):
    """Base of every error the keeper raises on purpose."""


class RetryableError(KeeperError):
    """A transient failure: the same operation may succeed if tried again."""


class FatalError(KeeperError):
    """A failure that retrying will not fix."""


# --- configuration and input -------------------------------------------------


class ConfigError(FatalError):
    """A setting is missing or invalid; the message names the setting."""


class ManifestError(FatalError):
    """The deployment manifest is missing, malformed or does not match the chain."""


# --- chain reads ---------------------------------------------------------------


class RpcError(RetryableError):
    """The node did not answer or answered with a transport-level error."""


class RpcTimeout(RpcError):
    """The node did not answer in time."""


class BlockUndecided(RetryableError):
    """A block's state could not be read or decided: what waited for its decisions does
    not know (journaled work is re-decided at a later block)."""


class DecodeError(FatalError):
    """Return data did not decode as the ABI says it must."""


class ReorgTooDeep(FatalError):
    """A reorganisation went deeper than the keeper keeps history for."""


# --- prices and quotes ---------------------------------------------------------


class OracleRejected(KeeperError):
    """An oracle round failed a guard (stale, non-positive, jumped too far)."""


class QuoteError(RetryableError):
    """The aggregator failed, stalled or returned something unusable."""


class QuoteRefused(FatalError):
    """A quote was well-formed but unsafe: price below the oracle bound, router not allowlisted."""


# --- sending -------------------------------------------------------------------


class SendError(RetryableError):
    """A broadcast failed for a transient reason."""


class NonceTooLow(SendError):
    """The node says the nonce was already used; the nonce manager must resync."""


class AlreadyKnown(SendError):
    """The node already has this exact transaction: it counts as sent."""


class Underpriced(SendError):
    """A replacement did not raise fees enough to be accepted."""


class InsufficientFunds(FatalError):
    """The keeper's account cannot pay for a transaction (gas x max fee + value): fund it."""


class FeeCapExceeded(KeeperError):
    """Fees are above the configured cap: non-urgent work waits."""


class SimulationReverted(FatalError):
    """An eth_call simulation reverted; carries the decoded reason."""

    def __init__(self, reason: str, data: bytes = b"") -> None:
        super().__init__(reason)
        self.reason = reason
        self.data = data


class DatabaseUnavailable(RetryableError):
    """The database connection failed mid-use (restarted server, a session it ended)."""


class LeaseLost(FatalError):
    """Another instance took over the leader lease: this one must not write or send."""


class OutOfGas(FatalError):
    """A call needs more gas than the node allows (its RPC gas cap) or than it was given."""


class JournalConflict(FatalError):
    """The journal and the chain disagree in a way the keeper will not guess about."""
