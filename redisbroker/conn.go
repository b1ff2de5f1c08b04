package redisbroker

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"time"
)

// dial connects to addr and prepares the connection: TLS, AUTH and
// SELECT as the options say. The whole exchange is bounded by
// DialTimeout.
func (b *Broker) dial(ctx context.Context, addr string, selectDB bool) (net.Conn, *respReader, error) {
	ctx, cancel := context.WithTimeout(ctx, b.opts.DialTimeout)
	defer cancel()
	d := net.Dialer{KeepAlive: 15 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	if b.opts.TLS != nil {
		cfg := b.opts.TLS.Clone()
		if cfg.ServerName == "" {
			host, _, _ := net.SplitHostPort(addr)
			cfg.ServerName = host
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, nil, err
		}
		nc = tc
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	r := newRESPReader(nc)
	var cmds [][]string
	switch {
	case b.opts.Username != "":
		cmds = append(cmds, []string{"AUTH", b.opts.Username, b.opts.Password})
	case b.opts.Password != "":
		cmds = append(cmds, []string{"AUTH", b.opts.Password})
	}
	if selectDB && b.opts.DB != 0 {
		cmds = append(cmds, []string{"SELECT", strconv.Itoa(b.opts.DB)})
	}
	if len(cmds) > 0 {
		if _, err := roundTrip(ctx, nc, r, cmds...); err != nil {
			nc.Close()
			return nil, nil, err
		}
	}
	return nc, r, nil
}

// roundTrip sends cmds in one write and reads their replies, within
// ctx's deadline. A Redis error reply is returned as the error.
func roundTrip(ctx context.Context, nc net.Conn, r *respReader, cmds ...[]string) ([]any, error) {
	if d, ok := ctx.Deadline(); ok {
		nc.SetDeadline(d)
		defer nc.SetDeadline(time.Time{})
	}
	var buf []byte
	for _, c := range cmds {
		buf = appendCommand(buf, c...)
	}
	if _, err := nc.Write(buf); err != nil {
		return nil, err
	}
	replies := make([]any, len(cmds))
	for i := range cmds {
		v, err := r.value()
		if err != nil {
			return nil, err
		}
		if e, ok := v.(RedisError); ok {
			return nil, fmt.Errorf("%s: %w", cmds[i][0], e)
		}
		replies[i] = v
	}
	return replies, nil
}
