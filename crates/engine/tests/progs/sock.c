/* Holds a UDP socket (dump must refuse it: only unix sockets are dumped). On SIGUSR1 writes DIR/verify "ok". */
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>
#include "usr1.h"
int main(int argc, char **argv)
{
	int sv[2];
	if (argc < 2 || chdir(argv[1]) || (sv[0] = socket(AF_INET, SOCK_DGRAM, 0)) < 0) return 2;
	signal(SIGUSR1, on_usr1);
	block_usr1();
	printf("ready sock=%d\n", sv[0]);
	fflush(stdout);
	for (;;) {
		wait_usr1();
		if (usr1) { FILE *f = fopen("verify", "w"); if (f) { fputs("ok\n", f); fclose(f); } usr1 = 0; }
	}
}
