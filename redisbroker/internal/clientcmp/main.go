// Command clientcmp compares, against one local redis-server it starts,
// how fast one goroutine can publish in order through go-redis pipelines,
// rueidis (DoMulti; and its automatic pipelining from 64 goroutines) and
// redisbroker's own pipelined connection: the measurement behind the
// broker's choice of client (see ../../README.md). It is its own module,
// so that rueidis is not a dependency of redisbroker:
//
//	cd redisbroker/internal/clientcmp && go run . -n 1000000
//
// Every publish is 64 bytes to one channel with no subscriber; a rate is
// publishes acknowledged per second; the CPU cost is this process's (user
// and system) per publish, which a busy machine disturbs less than rates.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
	"github.com/wsroom/wsroom/redisbroker"
)

func main() {
	n := flag.Int("n", 1000000, "publishes per measurement")
	rounds := flag.Int("rounds", 3, "rounds of every measurement, interleaved (the median is reported)")
	flag.Parse()
	addr, stop := startRedis()
	defer stop()
	payload := string(make([]byte, 64))
	const ch = "wsroom:room:cmp"

	gr := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 70})
	defer gr.Close()
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	if err != nil {
		log.Fatal(err)
	}
	defer rc.Close()
	rb := redisbroker.New(redisbroker.Options{Addrs: []string{addr}, Logger: slog.New(slog.DiscardHandler)})
	rb.Start(func(string, []byte) {})
	defer rb.Close()
	for rb.Publish(nil, "room:cmp")() != nil {
		time.Sleep(10 * time.Millisecond)
	}

	b, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("load average at the start %s\n\n", strings.Join(strings.Fields(string(b))[:3], " "))
	var names []string
	rates, costs := map[string][]float64{}, map[string][]float64{}
	run := func(name string, f func()) {
		start, cpu0 := time.Now(), cpuTime()
		f()
		if rates[name] == nil {
			names = append(names, name)
		}
		rates[name] = append(rates[name], float64(*n)/time.Since(start).Seconds())
		costs[name] = append(costs[name], float64(cpuTime()-cpu0)/1e3/float64(*n))
	}
	for range *rounds {
		measure(run, *n, gr, rc, rb, ch, payload)
	}
	fmt.Printf("| client, mode | publishes/s, median of %d (range) | client CPU µs/publish, median |\n|---|---:|---:|\n", *rounds)
	for _, name := range names {
		r, c := rates[name], costs[name]
		slices.Sort(r)
		slices.Sort(c)
		fmt.Printf("| %s | %.0fk (%.0fk–%.0fk) | %.2f |\n", name, r[len(r)/2]/1000, r[0]/1000, r[len(r)-1]/1000, c[len(c)/2])
	}
	b, _ = os.ReadFile("/proc/loadavg")
	fmt.Printf("\nload average at the end %s\n", strings.Join(strings.Fields(string(b))[:3], " "))
}

// measure runs every mode once.
func measure(run func(string, func()), n int, gr *redis.Client, rc rueidis.Client, rb *redisbroker.Broker, ch, payload string) {
	ctx := context.Background()
	nn := &n
	for _, batch := range []int{512, 4096} {
		run(fmt.Sprintf("go-redis, one goroutine, Pipeline of %d then Exec", batch), func() {
			for i := 0; i < *nn; i += batch {
				p := gr.Pipeline()
				for j := 0; j < batch && i+j < *nn; j++ {
					p.Publish(ctx, ch, payload)
				}
				if _, err := p.Exec(ctx); err != nil {
					log.Fatal(err)
				}
			}
		})
		run(fmt.Sprintf("rueidis, one goroutine, DoMulti of %d", batch), func() {
			cmds := make(rueidis.Commands, 0, batch)
			for i := 0; i < *nn; i += batch {
				cmds = cmds[:0]
				for j := 0; j < batch && i+j < *nn; j++ {
					cmds = append(cmds, rc.B().Publish().Channel(ch).Message(payload).Build())
				}
				for _, r := range rc.DoMulti(ctx, cmds...) {
					if r.Error() != nil {
						log.Fatal(r.Error())
					}
				}
			}
		})
	}
	run("redisbroker, one goroutine, 4096 outstanding, waits in order", func() {
		const window = 4096
		ring := make([]func() error, window)
		p := []byte(payload)
		for i := range *nn {
			if i >= window {
				if err := ring[i%window](); err != nil {
					log.Fatal(err)
				}
			}
			ring[i%window] = rb.Publish(p, "room:cmp")
		}
		for i := max(0, *nn-window); i < *nn; i++ {
			if err := ring[i%window](); err != nil {
				log.Fatal(err)
			}
		}
	})
	conc := func(do func() error) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 64 {
			wg.Go(func() {
				for next.Add(1) <= int64(*nn) {
					if err := do(); err != nil {
						log.Fatal(err)
					}
				}
			})
		}
		wg.Wait()
	}
	run("go-redis, 64 goroutines, Publish each", func() {
		conc(func() error { return gr.Publish(ctx, ch, payload).Err() })
	})
	run("rueidis, 64 goroutines, Do each (automatic pipelining)", func() {
		conc(func() error { return rc.Do(ctx, rc.B().Publish().Channel(ch).Message(payload).Build()).Error() })
	})
	run("redisbroker, 64 goroutines, Publish and wait each", func() {
		p := []byte(payload)
		conc(func() error { return rb.Publish(p, "room:cmp")() })
	})
}

// cpuTime returns the CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startRedis starts redis-server on a free loopback port.
func startRedis() (addr string, stop func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	addr = ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	dir, err := os.MkdirTemp("", "clientcmp")
	if err != nil {
		log.Fatal(err)
	}
	cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no", "--loglevel", "warning")
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	stop = func() { cmd.Process.Kill(); cmd.Wait(); os.RemoveAll(dir) }
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr, stop
		}
		if i == 500 {
			stop()
			log.Fatalf("redis-server on %s did not start: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
