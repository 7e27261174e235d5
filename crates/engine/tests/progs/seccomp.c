/* Two seccomp filters: allow-all, then acct() -> EPERM (everything else allowed).
 * Usage: seccomp DIR. On SIGUSR1 writes DIR/verify "ok" if acct() still fails with EPERM. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "usr1.h"
int main(int argc, char **argv)
{
	struct sock_filter allow[] = { BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW) };
	struct sock_filter no_acct[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_acct, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog p1 = { 1, allow }, p2 = { 4, no_acct };
	if (argc < 2 || chdir(argv[1])) return 2;
	signal(SIGUSR1, on_usr1);
	block_usr1();
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &p1) ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &p2))
		return 3;
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		wait_usr1();
		if (usr1) {
			int r = syscall(__NR_acct, NULL);
			FILE *f = fopen("verify", "w");
			if (f) { fprintf(f, "%s\n", r == -1 && errno == EPERM ? "ok" : "FAIL"); fclose(f); }
			usr1 = 0;
		}
	}
}
