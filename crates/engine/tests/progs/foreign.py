# Python threads doing work while dumped and restored (run by Debian's python3, not our code):
# four threads count, the main thread checks a large dict and writes
# <dir>/py.status: "tick=N ok=1|0 uid=U" atomically every 50 ms.
import os, sys, threading, time

d = sys.argv[1]
counts = [0] * 4


def work(i):
    while True:
        counts[i] += 1
        time.sleep(0.005)


for i in range(4):
    threading.Thread(target=work, args=(i,), daemon=True).start()
table = {i: str(i) * 7 for i in range(200000)}
while True:
    time.sleep(0.05)
    ok = all(table[i] == str(i) * 7 for i in range(0, 200000, 331))
    tmp = os.path.join(d, ".py.status")
    with open(tmp, "w") as f:
        f.write("tick=%d ok=%d uid=%d\n" % (sum(counts), ok, os.getuid()))
    os.rename(tmp, os.path.join(d, "py.status"))
