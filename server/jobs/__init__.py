"""Background work on RQ: Redis connections (external or embedded), queues by
purpose, the worker bootstrap and the timer poller. Jobs carry only ids and
re-enter the engine through the same services as HTTP."""
