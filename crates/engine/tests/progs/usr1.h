/* Waiting for SIGUSR1 without losing it (test programs).
 * SIGUSR1 stays blocked except inside sigsuspend(): one that arrives before the
 * wait, or just as a restored sigsuspend() restarts, is taken there and never
 * lost (with pause() it can land between the flag check and the wait).
 * Use: signal(SIGUSR1, on_usr1); block_usr1(); ... wait_usr1(); */
#include <signal.h>
static volatile sig_atomic_t usr1;
static void on_usr1(int s) { (void)s; usr1 = 1; }
static sigset_t waitmask;
static void block_usr1(void)
{ sigset_t m; sigemptyset(&m); sigaddset(&m, SIGUSR1); sigprocmask(SIG_BLOCK, &m, &waitmask); sigdelset(&waitmask, SIGUSR1); }
static void wait_usr1(void) { while (!usr1) sigsuspend(&waitmask); }
