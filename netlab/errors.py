"""Error types. Each carries a message a user can act on; the CLI prints it on one line."""


class NetlabError(Exception):
    """Base of every error netlab reports to a user."""

    exit_code = 1


class TopologyError(NetlabError):
    """The topology file is broken; the message names the field and the reason."""

    exit_code = 2


class PreconditionFailed(NetlabError):
    """An operation was refused before it changed anything."""


class IllegalTransition(PreconditionFailed):
    """A lifecycle command that the replica's current state does not allow."""


class OperationLocked(PreconditionFailed):
    """Another netlab process holds the VM (or the lab) for an operation."""


class UnknownNode(NetlabError):
    """A node name that the lab does not have."""

    exit_code = 2


class ToolMissing(NetlabError):
    """A program netlab needs is not installed."""


class ToolFailed(NetlabError):
    """A program netlab ran exited non-zero; the message carries its stderr."""


class NotRoot(NetlabError):
    """netlab changes namespaces, links and mounts: it needs root."""


class LabError(NetlabError):
    """The lab is not in a state that allows the command (not up, already up elsewhere, ...)."""


class NothingToDo(NetlabError):
    """An idempotent command found its work already done (down of a lab that is not up,
    undo of a plan that is not running): the CLI says so and exits 0."""

    exit_code = 0


class Cancelled(NetlabError):
    """The user answered no to a question: nothing changed, exit 1."""


class UnknownLab(LabError):
    """A lab that does not exist on this machine (never brought up, or down)."""

    exit_code = 2
