// A node event loop with timers and an in-memory map while dumped and restored (node's own threads,
// epoll and eventfds): writes <dir>/node.status: "tick=N ok=1|0" atomically every 50 ms.
const fs = require('fs');
const path = require('path');
const dir = process.argv[2];
const m = new Map();
for (let i = 0; i < 200000; i++) m.set(i, 'v' + i);
let n = 0;
setInterval(() => {
  n++;
  let ok = true;
  for (let i = 0; i < 200000; i += 331) ok = ok && m.get(i) === 'v' + i;
  const tmp = path.join(dir, '.node.status');
  fs.writeFileSync(tmp, `tick=${n} ok=${ok ? 1 : 0}\n`);
  fs.renameSync(tmp, path.join(dir, 'node.status'));
}, 50);
