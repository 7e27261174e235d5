/* SysV IPC and uts in namespaces of its own (made by unshare(1); objects made before it by ipcmk):
 * makes shm key 0x5151 (3 pages, attached, a pattern), queue 0x5252 with 3 messages, semaphore set
 * 0x5353 (values 7,8,9, mode 0640). Writes ipcns.ready "pid=P ids=SHM,MSG,SEM"; on SIGUSR1 writes
 * ipcns.verify: "pid=P host=H dom=D shm=ok ids=same msg=ok sem=ok queues=N" (FAIL where it differs),
 * reading the messages (they are gone afterwards). Usage: ipcns (cwd: the status dir). */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/utsname.h>
#include <unistd.h>
#include "status.h"
#include "usr1.h"
#include "pattern.h"
#define SZ (3 * 4096)
struct m { long mtype; char text[64]; };
static int count_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	char l[512];
	int n = -1;
	if (!f) return -2;
	while (fgets(l, sizeof(l), f)) n++;
	fclose(f);
	return n;
}
int main(void)
{
	int shmid, msqid, semid, i;
	unsigned short vals[3] = { 7, 8, 9 };
	unsigned char *shm;
	char buf[512];
	signal(SIGUSR1, on_usr1);
	block_usr1();
	shmid = shmget(0x5151, SZ, IPC_CREAT | 0600);
	msqid = msgget(0x5252, IPC_CREAT | 0620);
	semid = semget(0x5353, 3, IPC_CREAT | 0640);
	if (shmid < 0 || msqid < 0 || semid < 0) return 2;
	shm = shmat(shmid, NULL, 0);
	if (shm == (void *)-1) return 3;
	fill(shm, SZ, 5151);
	for (i = 0; i < 3; i++) {
		struct m msg = { .mtype = 10 + i };
		snprintf(msg.text, sizeof(msg.text), "cryo-msg-%d", i);
		if (msgsnd(msqid, &msg, strlen(msg.text) + 1, 0)) return 4;
	}
	if (semctl(semid, 0, SETALL, vals)) return 5;
	snprintf(buf, sizeof(buf), "pid=%d ids=%d,%d,%d\n", getpid(), shmid, msqid, semid);
	put_status(".", "ipcns.ready", buf);
	for (;;) {
		struct utsname u;
		unsigned short got[3] = { 0 };
		int ok_msg = 1, ids;
		wait_usr1();
		usr1 = 0;
		uname(&u);
		for (i = 0; i < 3; i++) {
			struct m msg;
			char exp[64];
			ssize_t n = msgrcv(msqid, &msg, sizeof(msg.text), 0, IPC_NOWAIT);
			snprintf(exp, sizeof(exp), "cryo-msg-%d", i);
			ok_msg &= n == (ssize_t)strlen(exp) + 1 && msg.mtype == 10 + i && !strcmp(msg.text, exp);
		}
		semctl(semid, 0, GETALL, got);
		ids = shmget(0x5151, 0, 0) == shmid && msgget(0x5252, 0) == msqid && semget(0x5353, 0, 0) == semid;
		snprintf(buf, sizeof(buf), "pid=%d host=%s dom=%s shm=%s ids=%s msg=%s sem=%s queues=%d\n", getpid(),
			 u.nodename, u.domainname, check(shm, SZ, 5151) ? "FAIL" : "ok", ids ? "same" : "FAIL",
			 ok_msg ? "ok" : "FAIL", got[0] == 7 && got[1] == 8 && got[2] == 9 ? "ok" : "FAIL",
			 count_lines("/proc/sysvipc/msg"));
		put_status(".", "ipcns.verify", buf);
	}
}
