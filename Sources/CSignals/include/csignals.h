// Stop requests (SIGTERM, SIGINT, SIGUSR1) recorded by an async-signal-safe handler, for the
// trainer to act on at its next step boundary.
#pragma once

/// Installs the recording handler for SIGTERM, SIGINT and SIGUSR1 (SA_RESTART, so interrupted
/// system calls in data workers and MPI simply continue) and unblocks them in the calling thread.
/// Returns 0, or the errno of the failed call.
int csignals_install(void);

/// Restores the default action of the three signals. Returns 0, or errno of the failed sigaction.
int csignals_restore(void);

/// The first stop signal received since install (or the last clear), or 0.
int csignals_pending(void);

/// Forgets a received signal.
void csignals_clear(void);
