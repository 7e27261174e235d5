/* Holds an established TCP connection over 127.0.0.1 (both ends; dump must refuse it without
 * --tcp-established) and a raw socket when given "raw". On SIGUSR1 writes DIR/verify "ok". */
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>
#include "usr1.h"
int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t l = sizeof(a);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (argc < 2 || chdir(argv[1])) return 2;
	int s = socket(AF_INET, argc > 2 && !strcmp(argv[2], "raw") ? SOCK_RAW : SOCK_STREAM, argc > 2 ? IPPROTO_ICMP : 0);
	if (s < 0) return 3;
	if (!(argc > 2)) {
		int c = socket(AF_INET, SOCK_STREAM, 0);
		if (bind(s, (void *)&a, sizeof(a)) || listen(s, 1) || getsockname(s, (void *)&a, &l) ||
		    connect(c, (void *)&a, sizeof(a)) || accept(s, NULL, NULL) < 0)
			return 4;
	}
	signal(SIGUSR1, on_usr1);
	block_usr1();
	printf("ready sock=%d\n", s);
	fflush(stdout);
	for (;;) {
		wait_usr1();
		if (usr1) { FILE *f = fopen("verify", "w"); if (f) { fputs("ok\n", f); fclose(f); } usr1 = 0; }
	}
}
