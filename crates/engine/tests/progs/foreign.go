// Goroutines on the Go runtime's threads (signals for preemption, futexes, timers) while dumped and
// restored: eight goroutines count, main checks a map and writes <dir>/go.status: "tick=N ok=1|0"
// atomically every 50 ms.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"
)

func main() {
	dir := os.Args[1]
	var n atomic.Int64
	for i := 0; i < 8; i++ {
		go func() {
			for {
				n.Add(1)
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	m := make(map[int]string)
	for i := 0; i < 200000; i++ {
		m[i] = "v" + strconv.Itoa(i)
	}
	for {
		time.Sleep(50 * time.Millisecond)
		ok := 1
		for i := 0; i < 200000; i += 331 {
			if m[i] != "v"+strconv.Itoa(i) {
				ok = 0
			}
		}
		tmp := filepath.Join(dir, ".go.status")
		os.WriteFile(tmp, []byte(fmt.Sprintf("tick=%d ok=%d\n", n.Load(), ok)), 0o644)
		os.Rename(tmp, filepath.Join(dir, "go.status"))
	}
}
