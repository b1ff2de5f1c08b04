package redistest

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Cluster is a Redis Cluster of masters without replicas, each a Server,
// started by a test on loopback.
type Cluster struct {
	Nodes []*Server
}

// Addrs returns the nodes' addresses.
func (c *Cluster) Addrs() []string {
	a := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		a[i] = n.Addr
	}
	return a
}

// StartCluster starts n redis-server processes with cluster-enabled yes
// (cluster-require-full-coverage no, so that the others serve while one
// is down), joins them with redis-cli --cluster create (no replicas:
// each master keeps its slots across a restart) and waits until every
// node reports cluster_state:ok. Cleanup kills them by PID.
func StartCluster(t TB, n int) *Cluster {
	t.Helper()
	needRedis(t)
	c := &Cluster{}
	for range n {
		s := &Server{Addr: clusterAddr(t), t: t, dir: t.TempDir(), extra: []string{
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000", "--cluster-require-full-coverage", "no",
		}}
		s.Restart()
		t.Cleanup(s.Stop)
		c.Nodes = append(c.Nodes, s)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitOK()
	return c
}

// WaitOK waits until every running node reports cluster_state:ok.
func (c *Cluster) WaitOK() {
	for _, s := range c.Nodes {
		if s.Stopped() {
			continue
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			info, err := Command(s.Addr, "CLUSTER", "INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				s.t.Fatalf("cluster node %s not ok: %q, %v", s.Addr, info, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// clusterAddr returns a free loopback address whose port p and cluster
// bus port p+10000 are both free, with p below the ephemeral range.
func clusterAddr(t TB) string {
	for range 100 {
		p := 20000 + rand.IntN(12000)
		a, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		b, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+10000))
		a.Close()
		if err != nil {
			continue
		}
		b.Close()
		return a.Addr().String()
	}
	t.Fatalf("no free port pair for a cluster node")
	return ""
}

// Command sends one inline command and returns its reply's first line,
// or, for a bulk string, its body.
func Command(addr string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	var sb strings.Builder
	fmt.Fprintf(&sb, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&sb, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(sb.String())); err != nil {
		return "", err
	}
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if strings.HasPrefix(line, "$") {
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("reply %q", line)
		}
		body := make([]byte, n+2)
		if _, err := io.ReadFull(br, body); err != nil {
			return "", err
		}
		return string(body[:n]), nil
	}
	if strings.HasPrefix(line, "-") {
		return "", fmt.Errorf("redis: %s", line[1:])
	}
	return line, nil
}

// NumSub returns PUBSUB NUMSUB for channel: how many connections
// subscribe to it.
func NumSub(addr, channel string) (int64, error) { return PubsubCount(addr, "NUMSUB", channel) }

// PubsubCount returns PUBSUB cmd (NUMSUB or SHARDNUMSUB) for channel.
func PubsubCount(addr, cmd, channel string) (int64, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(c, "*3\r\n$6\r\nPUBSUB\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(cmd), cmd, len(channel), channel)
	// *2, $len, channel, :count
	br := bufio.NewReader(c)
	var lines []string
	for len(lines) < 4 {
		line, err := br.ReadString('\n')
		if err != nil {
			return 0, err
		}
		lines = append(lines, strings.TrimSuffix(line, "\r\n"))
		if len(lines) == 2 && strings.HasPrefix(lines[1], "$") { // the channel may hold CRLF: read it by length
			n, err := strconv.Atoi(lines[1][1:])
			if err != nil || n < 0 {
				return 0, fmt.Errorf("NUMSUB reply %q", lines)
			}
			body := make([]byte, n+2)
			if _, err := io.ReadFull(br, body); err != nil {
				return 0, err
			}
			lines = append(lines, string(body[:n]))
		}
	}
	if lines[0] != "*2" || !strings.HasPrefix(lines[3], ":") {
		return 0, fmt.Errorf("NUMSUB reply %q", lines)
	}
	return strconv.ParseInt(lines[3][1:], 10, 64)
}
