// A client of `cryo swrk` built on go-criu (Debian's golang-github-checkpoint-restore-go-criu-dev),
// the library runc and podman drive CRIU with: VERSION, FEATURE_CHECK, DUMP with leave_running and
// notifications, a DUMP whose post-dump notification fails, a plain DUMP, and a RESTORE with
// notifications and rst_sibling (the restored program is this client's child, as runc's container
// init is runc's: the client reaps it); the program it dumps (tests/progs/spin) must run again
// afterwards. Run as pid 1 of a fresh PID namespace. Usage: gocriu CRYO SPIN DIR
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	criu "github.com/checkpoint-restore/go-criu/v5"
	"github.com/checkpoint-restore/go-criu/v5/rpc"
	"google.golang.org/protobuf/proto"
)

type notes struct {
	criu.NoNotify
	seen     []string
	failPost bool
	// The parent of the restored root at post-restore.
	ppid int
}

func (n *notes) PreDump() error { n.seen = append(n.seen, "pre-dump"); return nil }
func (n *notes) PostDump() error {
	n.seen = append(n.seen, "post-dump")
	if n.failPost {
		return errors.New("post-dump says no")
	}
	return nil
}
func (n *notes) PreRestore() error { n.seen = append(n.seen, "pre-restore"); return nil }
func (n *notes) PostRestore(pid int32) error {
	n.seen = append(n.seen, fmt.Sprintf("post-restore:%d", pid))
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	s := string(b)
	if i := strings.LastIndex(s, ")"); i > 0 {
		f := strings.Fields(s[i+1:])
		if len(f) > 1 {
			fmt.Sscan(f[1], &n.ppid)
		}
	}
	return nil
}
func (n *notes) PostResume() error { n.seen = append(n.seen, "post-resume"); return nil }

func fail(f string, a ...interface{}) {
	fmt.Printf("FAIL: "+f+"\n", a...)
	os.Exit(1)
}

// counter asks spin for its counter (SIGUSR1, it writes DIR/spin.status).
func counter(pid int, status string) string {
	os.Remove(status)
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		fail("kill -USR1 %d: %v", pid, err)
	}
	for i := 0; i < 1000; i++ {
		b, _ := os.ReadFile(status)
		if strings.HasSuffix(string(b), "ok\n") {
			return strings.TrimSpace(string(b))
		}
		time.Sleep(5 * time.Millisecond)
	}
	fail("pid %d does not answer", pid)
	return ""
}

func opts(dir *os.File, pid int) *rpc.CriuOpts {
	return &rpc.CriuOpts{
		ImagesDirFd: proto.Int32(int32(dir.Fd())),
		Pid:         proto.Int32(int32(pid)),
		LogFile:     proto.String("gocriu.log"),
		LogLevel:    proto.Int32(4),
	}
}

func main() {
	cryo, spin, dir := os.Args[1], os.Args[2], os.Args[3]
	c := criu.MakeCriu()
	c.SetCriuPath(cryo)
	v, err := c.GetCriuVersion()
	if err != nil || v < 31600 {
		fail("version %d %v", v, err)
	}
	fmt.Println("version", v)
	// go-criu 5.3 returns the features it asked for, not cryo's answer (fixed in go-criu 6): only
	// the request is checked here; tests/swrk.rs checks the answer.
	if _, err := c.FeatureCheck(&rpc.CriuFeatures{MemTrack: proto.Bool(true), LazyPages: proto.Bool(true)}); err != nil {
		fail("features: %v", err)
	}

	status := dir + "/spin.status"
	out, _ := os.Create(dir + "/spin.out")
	cmd := exec.Command(spin, status)
	cmd.Stdout = out
	if err := cmd.Start(); err != nil {
		fail("spin: %v", err)
	}
	pid := cmd.Process.Pid
	for i := 0; ; i++ {
		b, _ := os.ReadFile(dir + "/spin.out")
		if strings.Contains(string(b), "ready") {
			break
		}
		if i > 1000 {
			fail("spin did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	before := counter(pid, status)

	img, _ := os.Open(dir)
	// Leave running, with notifications.
	n := &notes{}
	o := opts(img, pid)
	o.LeaveRunning = proto.Bool(true)
	if err := c.Dump(o, n); err != nil {
		fail("dump -R: %v", err)
	}
	if strings.Join(n.seen, ",") != "pre-dump,post-dump" {
		fail("dump notifications %v", n.seen)
	}
	if counter(pid, status) == before {
		fail("not running after dump -R")
	}
	// post-dump refused by the client (go-criu closes the socket): resumed, no images.
	n = &notes{failPost: true}
	if err := c.Dump(opts(img, pid), n); err == nil {
		fail("a refused post-dump succeeded")
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := os.Stat(dir + "/inventory.img"); err == nil {
		fail("inventory.img left after a refused post-dump")
	}
	mid := counter(pid, status)
	// A plain dump kills it.
	if err := c.Dump(opts(img, pid), nil); err != nil {
		fail("dump: %v", err)
	}
	cmd.Wait()
	// Restore with notifications.
	n = &notes{}
	ro := &rpc.CriuOpts{ImagesDirFd: proto.Int32(int32(img.Fd())), LogFile: proto.String("gocriu-restore.log"),
		RstSibling: proto.Bool(true)}
	if err := c.Restore(ro, n); err != nil {
		fail("restore: %v", err)
	}
	want := fmt.Sprintf("pre-restore,post-restore:%d,post-resume", pid)
	if strings.Join(n.seen, ",") != want {
		fail("restore notifications %v, want %s", n.seen, want)
	}
	after := counter(pid, status)
	if after == mid {
		fail("restored counter did not move: %s", after)
	}
	if n.ppid != os.Getpid() {
		fail("rst_sibling: the restored %d has parent %d at post-restore, not this client (%d)", pid, n.ppid, os.Getpid())
	}
	// Ours to reap, as runc reaps its container's init.
	syscall.Kill(pid, syscall.SIGKILL)
	var ws syscall.WaitStatus
	if w, err := syscall.Wait4(pid, &ws, 0, nil); w != pid || err != nil || ws.Signal() != syscall.SIGKILL {
		fail("wait4(%d) = %d, %v, %v: the restored root is not this client's child", pid, w, err, ws)
	}
	fmt.Println("ok", before, mid, after)
}
