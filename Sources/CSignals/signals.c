// The signal handler only stores the signal number in a sig_atomic_t: everything else (agreeing
// with the other ranks, writing a checkpoint, printing) happens in the trainer at a step boundary,
// where it is safe. Swift closures cannot be trusted to be async-signal-safe, hence this shim.
#include "csignals.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>

static volatile sig_atomic_t pending_signal = 0;

static const int stop_signals[] = {SIGTERM, SIGINT, SIGUSR1};
enum { stop_signal_count = sizeof stop_signals / sizeof stop_signals[0] };

// Keeps the first signal: it names the reason (a time limit, Ctrl-C) in the report.
static void record(int signal_number) {
    if (pending_signal == 0) pending_signal = signal_number;
}

static int set_all(void (*handler)(int)) {
    struct sigaction action;
    action.sa_handler = handler;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    for (int i = 0; i < stop_signal_count; i++) sigaddset(&action.sa_mask, stop_signals[i]);
    for (int i = 0; i < stop_signal_count; i++) {
        if (sigaction(stop_signals[i], &action, NULL) != 0) return errno;
    }
    return 0;
}

int csignals_install(void) {
    int rc = set_all(record);
    if (rc != 0) return rc;
    // A launcher may start us with these signals blocked (a blocked mask survives fork and exec;
    // thread-pool threads of many runtimes block them): unblock them in this thread, from which
    // every thread the trainer starts later inherits its mask.
    sigset_t stop;
    sigemptyset(&stop);
    for (int i = 0; i < stop_signal_count; i++) sigaddset(&stop, stop_signals[i]);
    return pthread_sigmask(SIG_UNBLOCK, &stop, NULL);
}

int csignals_restore(void) { return set_all(SIG_DFL); }

int csignals_pending(void) { return pending_signal; }

void csignals_clear(void) { pending_signal = 0; }
